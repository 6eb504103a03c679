#!/bin/bash
# Runs inside the systemd-nspawn container (systemd 252 as PID 1, private network: only
# lo) as a oneshot unit, for tests/ext_systemd_deb.rs: 20 `systemctl restart`s in a row
# under load (200 background calls at 5 packets/s each through channels: over 200
# descriptors through systemd's store each time), each with a
# channel call and a Send-indication call of its own at 50 packets/s. Prints one ROUND
# line per restart (packets lost per call, the restart command's duration, and the gap:
# from the old process's shards standing still to the new one's having taken over, from
# the journal) and STEP lines for the test to assert. Every wait is bounded.
set -u
out=/opt/results
exec >"$out/probe.log" 2>&1
step() { echo "STEP $1 $2"; }
cfg=/etc/turnpike/turnserver.toml
rounds=20

dpkg -i /opt/probe/turnpike.deb; step install $?
secret=$(grep -v '^#' /etc/turnpike/secrets | head -n 1)
# The test relays to a loopback echo peer, which only a test config may allow.
token=probe-admin-token-0123456789
sed -i -e 's|^allow = \[\]|allow = ["127.0.0.0/8"]|' \
    -e "s|^# admin_token = .*|admin_token = \"$token\"|" \
    -e 's|^max_allocations_per_user = .*|max_allocations_per_user = 1000|' "$cfg"
timeout 60 systemctl restart turnpike; step restart $?
uclient() { timeout 30 turnutils_uclient -c -e 127.0.0.1 -r 3480 -W "$secret" "$@" 127.0.0.1; }
lost() { grep -o 'Total lost packets [0-9]*' "$1" | grep -o '[0-9]*$' || echo missing; }
# A tracing timestamp (2026-12-07T05:35:18.119414Z) in ms since the epoch.
ms() { echo $(( $(date -d "$1" +%s%N) / 1000000 )); }
# The last restart's gap, from the journal since $1 (seconds since the epoch): the old
# process logs when everything is in the store and how long its shards stood still for
# it; the new process logs when it has taken over (its shards run).
gap() {
    local j stored dur took
    j=$(journalctl -u turnpike -o cat --since "@$1")
    stored=$(grep "in systemd's store for the next process" <<<"$j" | tail -n 1)
    took=$(grep "took over from the old process" <<<"$j" | tail -n 1)
    [ -n "$stored" ] && [ -n "$took" ] || { echo missing; return; }
    dur=$(grep -o 'duration_ms=[0-9]*' <<<"$stored" | cut -d= -f2)
    echo $(( $(ms "${took%% *}") - $(ms "${stored%% *}") + dur ))
}

timeout 200 turnutils_peer -L 127.0.0.1 -p 3480 >/dev/null 2>&1 &
peer=$!
sleep 0.5
# The load: 200 sessions (one user: its quota is raised above) at 5 packets/s for 140 s,
# about as long as the rounds take.
timeout 200 turnutils_uclient -c -e 127.0.0.1 -r 3480 -W "$secret" -m 200 -n 700 -z 200 \
    127.0.0.1 >/root/load.log 2>&1 &
load=$!
sleep 2
start=$(date +%s)
# A round takes about 3 s: systemd's default start limit (5 in 10 s) is not reached.
for n in $(seq "$rounds"); do
    uclient -n 100 -z 20 >"/root/r$n-chan.log" 2>&1 &
    c=$!
    uclient -s -n 100 -z 20 >"/root/r$n-ind.log" 2>&1 &
    i=$!
    sleep 0.8
    since=$(date +%s)
    pid0=$(systemctl show -P MainPID turnpike)
    t0=$(date +%s%N)
    timeout 60 systemctl restart turnpike
    rc=$?
    took=$(( ($(date +%s%N) - t0) / 1000000 ))
    wait "$c"; rc_c=$?
    wait "$i"; rc_i=$?
    pid1=$(systemctl show -P MainPID turnpike)
    echo "ROUND $n rc=$rc calls=$rc_c/$rc_i new_pid=$([ "$pid1" != "$pid0" ] && echo yes || echo no)" \
        "chan_lost=$(lost "/root/r$n-chan.log") ind_lost=$(lost "/root/r$n-ind.log")" \
        "restart_ms=$took gap_ms=$(gap "$since")"
done
step rounds_s $(( $(date +%s) - start ))
step sessions_end "$(curl -s -m 5 -H "Authorization: Bearer $token" \
    http://127.0.0.1:9641/api/v1/sessions | jq '.sessions | length')"
wait "$load"; step load $?
tail -n 3 /root/load.log
step load_lost "$(lost /root/load.log)"
kill "$peer" 2>/dev/null
wait "$peer" 2>/dev/null
systemctl is-active turnpike; step active $?
step store_takeovers "$(journalctl -u turnpike -o cat | grep -c "taking over from systemd's store")"
step restarts "$(systemctl show -P NRestarts turnpike)"
journalctl -u turnpike --no-pager -o cat | grep -vE 'advertised relay|peers.allow' | tail -n 15
echo PROBE-DONE
