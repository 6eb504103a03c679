#!/bin/bash
# Runs inside the systemd-nspawn container (systemd as PID 1, private network: only lo) as
# a oneshot unit. Installs the .deb as an admin would and records each check as
# "STEP <name> <exit status>" for tests/ext_systemd_deb.rs to assert. Every wait is bounded.
set -u
out=/opt/results
exec >"$out/probe.log" 2>&1
step() { echo "STEP $1 $2"; }
cfg=/etc/turnpike/turnserver.toml

dpkg -i /opt/probe/turnpike.deb; step install $?
# postinst started the unit; Type=notify makes "active" mean READY=1 was sent.
systemctl is-active turnpike; step active $?
stat -c '%n %U:%G %a' /etc/turnpike /etc/turnpike/secrets "$cfg"
step secrets_mode "$(stat -c '%U:%G:%a' /etc/turnpike/secrets)"
step service_user "$(stat -c %U "/proc/$(systemctl show -P MainPID turnpike)")"
secret=$(grep -v '^#' /etc/turnpike/secrets | head -n 1)

timeout 10 turnutils_stunclient 127.0.0.1; step binding $?
# The test relays to a loopback echo peer, which only a test config may allow.
cp "$cfg" /root/orig.toml
sed -i -e 's|^allow = \[\]|allow = ["127.0.0.0/8"]|' -e 's|^drain_timeout = .*|drain_timeout = "12s"|' "$cfg"
timeout 60 systemctl reload turnpike; step reload_good $?
# turnutils_peer binds with SO_REUSEPORT: a peer left running beside the next one would
# take part of the echoes and lose one when its timeout ends it, so each is ended by PID.
peer_pid=
peer_start() { timeout 30 turnutils_peer -L 127.0.0.1 -p 3480 >/dev/null 2>&1 & peer_pid=$!; sleep 0.5; }
peer_stop() { kill "$peer_pid" 2>/dev/null; wait "$peer_pid" 2>/dev/null; }
uclient() { timeout 40 turnutils_uclient -c -e 127.0.0.1 -r 3480 -W "$secret" "$@" 127.0.0.1; }
lost() { grep -o 'Total lost packets [0-9]*' "$1" | grep -o '[0-9]*$' || echo missing; }
peer_start
uclient -n 20 -z 20 >/root/u1.log 2>&1; step relay $?
peer_stop
step relay_lost "$(lost /root/u1.log)"

# A broken config: reload fails with an exit status, the running config keeps serving.
cp "$cfg" /root/good.toml
printf '\n[bogus]\nkey = 1\n' >>"$cfg"
timeout 60 systemctl reload turnpike; step reload_bad $?
systemctl is-active turnpike; step active_after_bad_reload $?
peer_start
uclient -n 20 -z 20 >/root/u2.log 2>&1; step relay_after_bad_reload $?
peer_stop
step relay_after_bad_reload_lost "$(lost /root/u2.log)"

# A node that cannot relay never becomes active: restart fails (Type=exec said 0).
sed -i 's|^# ipv4 = "192.0.2.10"|ipv4 = "192.0.2.10"|' /root/good.toml
cp /root/good.toml "$cfg"
timeout 30 systemctl restart turnpike; step restart_unrelayable $?
sed -i 's|^ipv4 = "192.0.2.10"|# ipv4 = "192.0.2.10"|' /root/good.toml
cp /root/good.toml "$cfg"
systemctl reset-failed turnpike
timeout 30 systemctl start turnpike; step restart_good $?

# Drain: a call in progress keeps relaying through `systemctl stop`; a new one is refused.
peer_start
uclient -n 160 -z 50 >/root/long.log 2>&1 &
long=$!
sleep 2
t0=$(date +%s)
systemctl stop --no-block turnpike
sleep 1
step stopping_state "$(systemctl is-active turnpike)"
uclient -n 5 -z 20 >/root/new.log 2>&1; step new_allocate $?
grep -h -o 'error [0-9]* (.*)' /root/new.log | head -n 3
wait "$long"; step long_relay $?
step long_relay_lost "$(lost /root/long.log)"
peer_stop
for _ in $(seq 60); do
    [ "$(systemctl is-active turnpike)" = inactive ] && break
    sleep 0.5
done
step stopped "$(systemctl is-active turnpike)"
step drain_seconds $(( $(date +%s) - t0 ))
step main_status "$(systemctl show -P ExecMainStatus turnpike)"

# A certbot-style TLS key (0600 root) reaches the unprivileged service through
# LoadCredential=, as the unit's header documents.
mkdir -p /etc/letsencrypt/live/turn.test
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=turn.test \
    -keyout /etc/letsencrypt/live/turn.test/privkey.pem \
    -out /etc/letsencrypt/live/turn.test/fullchain.pem 2>/dev/null
chmod 0600 /etc/letsencrypt/live/turn.test/privkey.pem
mkdir -p /etc/systemd/system/turnpike.service.d
printf '[Service]\nLoadCredential=tls.crt:/etc/letsencrypt/live/turn.test/fullchain.pem\nLoadCredential=tls.key:/etc/letsencrypt/live/turn.test/privkey.pem\n' \
    >/etc/systemd/system/turnpike.service.d/tls.conf
sed -i -e 's|^listen_tls = \[\]|listen_tls = ["127.0.0.1:5349"]|' \
    -e 's|^# cert = .*|cert = "/run/credentials/turnpike.service/tls.crt"|' \
    -e 's|^# key = .*|key = "/run/credentials/turnpike.service/tls.key"|' "$cfg"
systemctl daemon-reload
timeout 30 systemctl start turnpike; step tls_credential_start $?
echo | timeout 10 openssl s_client -connect 127.0.0.1:5349 -servername turn.test 2>/dev/null \
    | grep -q 'subject=CN = turn.test'; step tls_handshake $?
timeout 60 systemctl stop turnpike

# The journal: priorities per level, no colour codes, no config dump.
step journal_warnings "$(journalctl -q -u turnpike -p warning --no-pager | grep -c 'relay address')"
step journal_ansi "$(journalctl -q -u turnpike -o cat --no-pager | grep -c $'\e\\[')"
step journal_dump "$(journalctl -q -u turnpike -o cat --no-pager | grep -c 'Config {')"
journalctl -q -u turnpike -o short-monotonic --no-pager | tail -n 40
echo PROBE-DONE
