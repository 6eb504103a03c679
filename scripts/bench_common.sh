# Shared by scripts/bench.sh and scripts/bench_profile.sh (sourced, not run): the scratch
# directory with a test certificate, cleanup of the processes they start, and the modes.

SECRET=bench-secret
dir=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 -addext basicConstraints=critical,CA:FALSE \
  -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null

# mode -> loadgen flags (payload sizes are multiples of 4: TCP pads ChannelData).
flags() {
  case $1 in
    ch100) echo "--mode channel --size 100" ;;
    ch1200) echo "--mode channel --size 1200" ;;
    ch100w1) echo "--mode channel --size 100 --clients 400 --window 1 --burst 1" ;;
    ind100) echo "--mode indication --size 100" ;;
    tcp100) echo "--mode channel --size 100 --transport tcp" ;;
    tls100) echo "--mode channel --size 100 --transport tls --ca $dir/cert.pem" ;;
    c2c100) echo "--mode channel --size 100 --c2c" ;;
    *) echo "unknown mode $1" >&2; exit 2 ;;
  esac
}

# Equivalent configs for both servers: REST secret, loopback peers, UDP+TCP+TLS
# listeners, quiet logs. turnpike_config FILE PORT TLS_PORT RELAY_PORTS SHARDS [GSO]
turnpike_config() {
  cat >"$1" <<TOML
[server]
listen_udp = ["127.0.0.1:$2"]
listen_tcp = ["127.0.0.1:$2"]
listen_tls = ["127.0.0.1:$3"]
shards = $5
unauthenticated_rate = 0
max_connections_per_ip = 1000
[tls]
cert = "$dir/cert.pem"
key = "$dir/key.pem"
[relay]
ipv4 = "127.0.0.1"
ports = "$4"
max_allocations = 20000
max_allocations_per_user = 20000
gso = ${6:-true}
[auth]
secrets = ["$SECRET"]
[peers]
allow = ["127.0.0.0/8"]
[http]
enabled = false
[log]
level = "warn"
TOML
}

# coturn_config FILE PORT TLS_PORT MIN_PORT MAX_PORT [RELAY_THREADS] (unset: its default)
coturn_config() {
  cat >"$1" <<CONF
listening-ip=127.0.0.1
listening-port=$2
tls-listening-port=$3
cert=$dir/cert.pem
pkey=$dir/key.pem
relay-ip=127.0.0.1
min-port=$4
max-port=$5
use-auth-secret
static-auth-secret=$SECRET
realm=turnpike
allow-loopback-peers
no-dtls
no-cli
no-rfc5780
${6:+relay-threads=$6}
log-file=/dev/null
simple-log
CONF
}
