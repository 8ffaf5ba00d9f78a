#!/usr/bin/env bash
# loadgen's own ceiling: wrk (Debian package `wrk`) and `loadgen run --accept-only` against the
# same trivial endpoint (a tiny HTTP server answering every request 202 {}), in the same run, on
# the same cores, 64 connections each. Writes results/loadgen-ceiling.json with both rates and
# their ratio. Both POST a 765-byte body.
#   SECS=5 bash scripts/bench-loadgen-ceiling.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/cargo-target.sh
secs=${SECS:-5}
command -v wrk >/dev/null || { echo "wrk is not installed: apt-get install wrk" >&2; exit 1; }
cargo build --release -q -p cairn-loadgen
release=$(cargo_target_dir)/release
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# The endpoint: the same bare HTTP/1.1 server for both, in Python's asyncio (one core).
python3 - "$port" <<'PY' &
import asyncio, sys
async def handle(r, w):
    try:
        while True:
            head = await r.readuntil(b"\r\n\r\n")
            n = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    n = int(line.split(b":")[1])
            if n:
                await r.readexactly(n)
            w.write(b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}")
            await w.drain()
    except Exception:
        w.close()
async def main():
    s = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]), backlog=1024)
    async with s:
        await s.serve_forever()
asyncio.run(main())
PY
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

# wrk sends the same request loadgen does: POST of a 765-byte body.
lua=$(mktemp --suffix .lua)
python3 - "$lua" <<'PY'
import sys
body = '{"pad": "' + "x" * 754 + '"}'
assert len(body) == 765
open(sys.argv[1], "w").write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = \'%s\'\n' % body)
PY
# The server takes one of the cores: each client gets one thread. Three alternating rounds.
mkdir -p results
rounds=()
for round in 1 2 3; do
  wrk_rate=$(wrk -t1 -c64 -d"${secs}s" -s "$lua" "http://127.0.0.1:$port/api/v1/transactions" | awk '/Requests\/sec:/ {print $2}')
  count=$(python3 -c "print(max(1000, int(float('$wrk_rate') * $secs)))")
  "$release/loadgen" run --threads 1 --target "http://127.0.0.1:$port" --accept-only --count "$count" --concurrency 64 --json > "results/loadgen-ceiling-run.json" 2>/dev/null
  ours=$(python3 -c 'import json; print(json.load(open("results/loadgen-ceiling-run.json"))["accepted"]["tx_per_s"])')
  echo "round $round: wrk $wrk_rate req/s, loadgen $ours req/s"
  rounds+=("$wrk_rate:$ours")
done
rm -f "$lua"
python3 - "${rounds[@]}" <<'PY'
import json, sys, statistics
pairs = [tuple(map(float, a.split(":"))) for a in sys.argv[1:]]
wrk = statistics.median(p[0] for p in pairs)
ours = statistics.median(p[1] for p in pairs)
r = json.load(open("results/loadgen-ceiling-run.json"))
out = {"endpoint": "bare HTTP/1.1 server (Python asyncio, one core) answering 202 {}", "connections": 64, "client_threads": 1,
       "rounds": [{"wrk": w, "loadgen": l} for w, l in pairs], "statistic": "median of 3 alternating rounds",
       "wrk_requests_per_s": wrk, "loadgen_requests_per_s": ours, "ratio": ours / wrk,
       "request": "POST of a 765-byte body (loadgen: a signed CREATE; wrk: padding)", "machine": r["machine"]}
json.dump(out, open("results/loadgen-ceiling.json", "w"), indent=2)
print(f"wrk {wrk:.0f} req/s, loadgen {ours:.0f} req/s, ratio {ours / wrk:.2f} -> results/loadgen-ceiling.json")
PY
