#!/bin/bash
# Runs inside the systemd-nspawn container (systemd 252 as PID 1, a private network the
# test's container owns) as a oneshot unit, for tests/ext_systemd_deb.rs: the kernel fast
# path under the packaged, hardened unit. The container is the relay host (s0, 10.11.0.2)
# behind a router namespace, with the client and the echo peer in namespaces of their own
# (the model of tests/support/veth.rs). Without the documented drop-in the service runs
# on the socket path and says why; with it, native XDP relays the call's ChannelData and
# the totals stay exact. Records "STEP <name> <value>"; every wait is bounded.
set -u
out=/opt/results
exec >"$out/probe.log" 2>&1
step() { echo "STEP $1 $2"; }
cfg=/etc/turnpike/turnserver.toml

dpkg -i /opt/probe/turnpike.deb; step install $?
secret=$(grep -v '^#' /etc/turnpike/secrets | head -n 1)

# client c0 -- r1 router r0 -- s0 this host; router r2 -- p0 peer.
for ns in cl rt pe; do ip netns add "$ns"; done
ip link add s0 type veth peer name r0 netns rt
ip -n rt link add r1 type veth peer name c0 netns cl
ip -n rt link add r2 type veth peer name p0 netns pe
ip addr add 10.11.0.2/24 dev s0
ip link set s0 up
ip route add default via 10.11.0.1
ip -n rt addr add 10.11.0.1/24 dev r0
for x in 1 2; do
    ns=$([ $x = 1 ] && echo cl || echo pe)
    dev=$([ $x = 1 ] && echo c0 || echo p0)
    ip -n rt addr add "10.11.$x.1/24" dev "r$x"
    ip -n "$ns" addr add "10.11.$x.2/24" dev "$dev"
    ip -n "$ns" link set "$dev" up
    ip -n "$ns" link set lo up
    ip -n "$ns" route add default via "10.11.$x.1"
    # Full checksums from the senders, as from a real NIC (veth defaults to partial).
    ip netns exec "$ns" ethtool -K "$dev" tx off >/dev/null
done
for d in r0 r1 r2 lo; do ip -n rt link set "$d" up; done
ip netns exec rt sysctl -qw net.ipv4.ip_forward=1
# A veth takes frames its peer sends with XDP_TX only with an XDP program of its own.
printf '#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\nSEC("xdp") int pass(struct xdp_md *c) { return XDP_PASS; }\nchar LICENSE[] SEC("license") = "GPL";\n' >/root/pass.c
clang -O2 -target bpf "-I/usr/include/$(uname -m)-linux-gnu" -c /root/pass.c -o /root/pass.o
ip -n rt link set dev r0 xdpdrv obj /root/pass.o sec xdp; step topology $?

token=probe-admin-token-0123456789
sed -i -e 's|^allow = \[\]|allow = ["10.11.2.0/24"]|' \
    -e 's|^listen_udp = .*|listen_udp = ["10.11.0.2:3478"]|' \
    -e 's|^# ipv4 = "192.0.2.10"|ipv4 = "10.11.0.2"|' \
    -e 's|^drain_timeout = .*|drain_timeout = "1s"|' \
    -e "s|^# admin_token = .*|admin_token = \"$token\"|" "$cfg"
sed -i '/^\[fastpath\]/,$ s|^enabled = false|enabled = true|; /^\[fastpath\]/,$ s|^# interface = .*|interface = "s0"|' "$cfg"
sed -n '/^\[fastpath\]/,$p' "$cfg" | grep -v '^#'

metric() { curl -s -m 5 http://127.0.0.1:9641/metrics | grep -F "$1" | awk '{s += $2} END {print s + 0}'; }
# One call: 200 ChannelData messages to the echo peer and back. Prints the packets lost.
call() {
    timeout 30 ip netns exec pe turnutils_peer -L 10.11.2.2 -p 3480 >/dev/null 2>&1 &
    local peer=$!
    sleep 0.5
    timeout 40 ip netns exec cl turnutils_uclient -c -e 10.11.2.2 -r 3480 -W "$secret" \
        -n 200 -z 10 10.11.0.2 >"/root/$1.log" 2>&1
    step "$1_call" $?
    kill "$peer" 2>/dev/null
    wait "$peer" 2>/dev/null
    step "$1_lost" "$(grep -o 'Total lost packets [0-9]*' "/root/$1.log" | grep -o '[0-9]*$' || echo missing)"
}
# What the server counted, once the call's last packets are in.
counted() {
    step "$1_kernel" "$(metric turnpike_fastpath_packets_total)"
    step "$1_to_peer" "$(metric 'turnpike_relayed_packets_total{direction="client_to_peer",transport="udp"}')"
    step "$1_to_client" "$(metric 'turnpike_relayed_packets_total{direction="peer_to_client",transport="udp"}')"
}

# The hardened unit alone: no capability to load BPF.
timeout 60 systemctl restart turnpike; step plain_restart $?
step plain_mode_off "$(metric 'turnpike_fastpath_info{mode="off"}')"
journalctl -u turnpike -o cat | grep -c "kernel fast path not attached" | { read -r n; step plain_said_why "$n"; }
call plain
counted plain

# With the drop-in the package documents.
mkdir -p /etc/systemd/system/turnpike.service.d
cp /usr/share/doc/turnpike/examples/turnpike-fastpath.conf /etc/systemd/system/turnpike.service.d/fastpath.conf
systemctl daemon-reload
timeout 60 systemctl restart turnpike; step fast_restart $?
step fast_mode_xdp "$(metric 'turnpike_fastpath_info{mode="xdp"}')"
step fast_user "$(stat -c %U "/proc/$(systemctl show -P MainPID turnpike)")"
call fast
sleep 0.5
counted fast
grep -i 'fastpath\|fast path' <(journalctl -u turnpike -o cat) | tail -n 4
systemd-analyze security turnpike | tail -n 1
echo PROBE-DONE
