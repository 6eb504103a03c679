#!/bin/bash
# Runs inside the systemd-nspawn container (systemd 252 as PID 1, private network: only
# lo) as a oneshot unit, for tests/ext_systemd_deb.rs: two calls at 50 packets/s (one
# through a channel, one through Send indications) while the package is upgraded to a
# newer version (`dpkg -i`: the package restarts the unit) and `systemctl restart`, both
# through systemd's file descriptor store, then across an exec handover (SIGURG). The
# sessions API is read before and after each. Records "STEP <name> <value>"; every wait
# is bounded.
set -u
out=/opt/results
exec >"$out/probe.log" 2>&1
step() { echo "STEP $1 $2"; }
cfg=/etc/turnpike/turnserver.toml

dpkg -i /opt/probe/turnpike.deb; step install $?
secret=$(grep -v '^#' /etc/turnpike/secrets | head -n 1)
# The test relays to a loopback echo peer, which only a test config may allow.
token=probe-admin-token-0123456789
sed -i -e 's|^allow = \[\]|allow = ["127.0.0.0/8"]|' \
    -e "s|^# admin_token = .*|admin_token = \"$token\"|" "$cfg"
timeout 60 systemctl restart turnpike; step restart $?
uclient() { timeout 40 turnutils_uclient -c -e 127.0.0.1 -r 3480 -W "$secret" "$@" 127.0.0.1; }
lost() { grep -o 'Total lost packets [0-9]*' "$1" | grep -o '[0-9]*$' || echo missing; }
sessions() {
    curl -s -m 5 -H "Authorization: Bearer $token" http://127.0.0.1:9641/api/v1/sessions
}
# How many allocations in the listing $1 have relayed something.
flowing() { jq '[.sessions[] | select(.packets_to_peer > 0)] | length' "$1"; }
# How many allocations of $1 (a sessions listing) $2 still has, on the same relayed
# address and client, with counters that went on rather than from zero.
kept() {
    jq -n --slurpfile b "$1" --slurpfile a "$2" '[$b[0].sessions[] | select(.packets_to_peer > 0) as $x
        | $a[0].sessions[] | select(.relay == $x.relay and .client == $x.client
        and .packets_to_peer >= $x.packets_to_peer and .packets_to_peer > 0)] | length'
}
sent() { grep -o 'Total send dropped [0-9]*\|tot_send_msgs=[0-9]*' "$1" | tail -n 1 | grep -o '[0-9]*$' || echo missing; }

# Two calls across one handover; `how` triggers it.
calls_across() {
    local name=$1 how=$2
    timeout 30 turnutils_peer -L 127.0.0.1 -p 3480 >/dev/null 2>&1 &
    local peer=$!
    sleep 0.5
    local pid0 c i t0
    pid0=$(systemctl show -P MainPID turnpike)
    sessions >"/root/$name-base.json"
    local base
    base=$(flowing "/root/$name-base.json")
    uclient -n 300 -z 20 >"/root/$name-chan.log" 2>&1 &
    c=$!
    uclient -s -n 300 -z 20 >"/root/$name-ind.log" 2>&1 &
    i=$!
    sleep 2
    # uclient sends only once all its sessions are set up: wait (bounded) until both
    # calls have relayed something (besides the earlier calls' allocations, which stay
    # until they expire), then list them.
    for _ in $(seq 50); do
        sessions >"/root/$name-before.json"
        [ "$(flowing "/root/$name-before.json")" -ge $((base + 2)) ] && break
        sleep 0.1
    done
    t0=$(date +%s%N)
    $how; step "${name}_trigger" $?
    step "${name}_ms" $(( ($(date +%s%N) - t0) / 1000000 ))
    local pid1
    pid1=$(systemctl show -P MainPID turnpike)
    [ "$pid1" != "$pid0" ] && [ "$pid1" != 0 ]; step "${name}_new_main_pid" $?
    sleep 1
    sessions >"/root/$name-after.json"
    step "${name}_sessions_before" "$(flowing "/root/$name-before.json")"
    step "${name}_sessions_kept" "$(kept "/root/$name-before.json" "/root/$name-after.json")"
    wait "$c"; step "${name}_chan" $?
    wait "$i"; step "${name}_ind" $?
    tail -n 6 "/root/$name-chan.log" "/root/$name-ind.log"
    step "${name}_chan_sent" "$(sent "/root/$name-chan.log")"
    step "${name}_chan_lost" "$(lost "/root/$name-chan.log")"
    step "${name}_ind_sent" "$(sent "/root/$name-ind.log")"
    step "${name}_ind_lost" "$(lost "/root/$name-ind.log")"
    kill -0 "$pid0" 2>/dev/null; step "${name}_old_alive" $?
    systemctl is-active turnpike; step "${name}_active" $?
    kill "$peer" 2>/dev/null
    wait "$peer" 2>/dev/null
}
urg() {
    systemctl kill --kill-who=main -s URG turnpike || return 1
    for _ in $(seq 50); do
        [ "$(systemctl show -P MainPID turnpike)" != "$1" ] && return 0
        sleep 0.1
    done
    return 1
}
# A newer version of the package (only the version differs from the installed one).
upgrade() { dpkg -i /opt/probe/turnpike-next.deb; }
restart() { timeout 60 systemctl restart turnpike; }
# A new process that fails (a broken config) keeps the store for the next one Restart=
# starts; the admin fixes the config meanwhile.
failing_restart() {
    cp "$cfg" /root/good.toml
    printf '\n[bogus]\nkey = 1\n' >>"$cfg"
    systemctl restart --no-block turnpike
    sleep 1.5
    cp /root/good.toml "$cfg"
    for _ in $(seq 100); do
        systemctl is-active --quiet turnpike && return 0
        sleep 0.1
    done
    return 1
}
admin() { urg "$(systemctl show -P MainPID turnpike)"; }
calls_across upgrade upgrade
step upgraded_to "$(dpkg-query -W -f '${Version}' turnpike)"
calls_across restart restart
calls_across failing failing_restart
step store_takeovers "$(journalctl -u turnpike -o cat | grep -c "taking over from systemd's store")"
# Last: after it the main process is no longer systemd's child (see the unit).
calls_across signal admin
# The watchdog (30 s) keeps being fed by the process that took over.
sleep 35
systemctl is-active turnpike; step active_after_watchdog $?
step restarts "$(systemctl show -P NRestarts turnpike)"
journalctl -u turnpike --no-pager -o cat | grep -vE 'advertised relay|peers.allow' | tail -n 25
echo PROBE-DONE
