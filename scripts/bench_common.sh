# Shared by scripts/bench.sh and scripts/bench_profile.sh (sourced, not run): the scratch
# directory with a test certificate, cleanup of the processes they start, and the modes.

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
