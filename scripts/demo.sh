#!/usr/bin/env bash
# Set-up command 1: build Cairn, start one node in a temporary directory, drive a short load
# against it with loadgen, print the figures, stop the node and clean up.
#   COUNT=20000 PORT=9984 WS_PORT=9985 bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
count=${COUNT:-20000}
port=${PORT:-9984}
ws_port=${WS_PORT:-9985}

cargo build --release -p cairn-node -p cairn-loadgen

dir=$(mktemp -d)
export CAIRN_CONFIG=$dir/config.toml
export CAIRN_WSSERVER_ADVERTISED_PORT=$ws_port
./target/release/cairn configure -y
./target/release/cairn start --data-dir "$dir/data" --bind "127.0.0.1:$port" --ws-bind "127.0.0.1:$ws_port" >"$dir/node.log" 2>&1 &
pid=$!
cleanup() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

for _ in $(seq 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  if ! kill -0 "$pid" 2>/dev/null; then echo "cairn failed to start:" >&2; cat "$dir/node.log" >&2; exit 1; fi
  sleep 0.1
done

mkdir -p results
./target/release/loadgen --target "http://127.0.0.1:$port" --count "$count" --concurrency 64 --out results/demo.json > /dev/null
echo "full results: results/demo.json (and results/demo.csv)"
