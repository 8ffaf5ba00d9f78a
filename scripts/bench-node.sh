#!/usr/bin/env bash
# Benchmark: one node (embedded engine) on this machine, loadgen on the same cores, COUNT
# 765-byte CREATEs sent as fast as 64 connections (CONCURRENCY) allow, on one growing ledger. Reports, from
# the run's per-transaction events: committed tx/s overall and for the first and the last
# 100,000 transactions committed (flatness), the ratio to the raw Ed25519 verify rate measured
# in the same run (mean of before and after), the node's peak RSS, its CPU µs per committed transaction, and the stored
# bytes per transaction. Writes results/node-<label>.json (+ loadgen's own files beside it).
# Usage: scripts/bench-node.sh [LABEL] [COUNT]   (default: now 1000000)
#        BIN_DIR=/path/with/cairn+loadgen scripts/bench-node.sh before   (binaries of another build)
#        CONCURRENCY=256 scripts/bench-node.sh c256   (connections; 64 unless set, as in every
#        figure of docs/performance.md that does not say otherwise)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/cargo-target.sh
label=${1:-now}
count=${2:-1000000}
bin=${BIN_DIR:-$(cargo_target_dir)/release}
export CONCURRENCY=${CONCURRENCY:-64}
[ -n "${BIN_DIR:-}" ] || cargo build --release -q -p cairn-node -p cairn-loadgen
dir=$(mktemp -d /tmp/cairn-bench-node-XXXX)
# Two ports free at the same moment (port+1 could be taken, e.g. by a client connection).
read -r port ws < <(python3 -c 'import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))')
export CAIRN_CONFIG=$dir/config.toml CAIRN_WSSERVER_ADVERTISED_PORT=$ws
"$bin/cairn" configure -y > /dev/null
"$bin/cairn" start --data-dir "$dir/data" --bind "127.0.0.1:$port" --ws-bind "127.0.0.1:$ws" > "$dir/node.log" 2>&1 &
node=$!
trap 'kill $node 2>/dev/null || true; wait $node 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$port/" > /dev/null && break; kill -0 $node || { cat "$dir/node.log"; exit 1; }; sleep 0.1; done
curl -sf "http://127.0.0.1:$port/" > /dev/null || { cat "$dir/node.log"; echo "the node did not answer on 127.0.0.1:$port within 30 s (its log is above)" >&2; exit 1; }
mkdir -p results
out=results/node-$label.json
"$bin/loadgen" run --target "http://127.0.0.1:$port" --count "$count" --concurrency "$CONCURRENCY" --threads 1 \
  --commit-timeout 120 --plain --out "results/node-$label-loadgen.json" > /dev/null
hwm_kb=$(awk '/VmHWM/ {print $2}' /proc/$node/status)
rss_kb=$(awk '/VmRSS/ {print $2}' /proc/$node/status)
read -r utime stime < <(awk '{print $14, $15}' /proc/$node/stat)
ticks=$(getconf CLK_TCK)
# CPU ticks per thread name (tokio-rt-worker = HTTP and ingest; consensus; sig-verifier; …).
threads=$(for t in /proc/$node/task/*/stat; do sed -E 's/^[0-9]+ \(([^)]*)\) (.*)$/\1|\2/' "$t" | awk -F'|' '{split($2, f, " "); print $1 "=" f[12] + f[13]}'; done | paste -sd, -)
kill -TERM $node; wait $node || true
stored=$(du -sb "$dir/data" | cut -f1)
python3 - "$out" "$count" "$hwm_kb" "$rss_kb" "$utime" "$stime" "$ticks" "$stored" "$threads" "$bin" <<'EOF'
import csv, hashlib, json, os, subprocess, sys
out, count, hwm_kb, rss_kb, utime, stime, ticks, stored = sys.argv[1], int(sys.argv[2]), *map(int, sys.argv[3:9])
# What ran: with BIN_DIR the binaries come from another build than the work tree "git" names;
# their --version carries the commit they were built from.
binaries = {}
for name in ("cairn", "loadgen"):
    path = os.path.join(sys.argv[10], name)
    version = subprocess.run([path, "--version"], capture_output=True, text=True).stdout.strip()
    binaries[name] = {"path": os.path.abspath(path), "version": version, "sha256": hashlib.sha256(open(path, "rb").read()).hexdigest()}
per_thread = {}
for item in sys.argv[9].split(","):
    name, t = item.rsplit("=", 1)
    per_thread[name] = per_thread.get(name, 0) + int(t)
lg = out[:-len(".json")] + "-loadgen"
run = json.load(open(lg + ".json"))
with open(lg + ".events.csv") as f:
    rows = list(csv.DictReader(f))
done = sorted(float(r["committed_us"]) for r in rows if r["committed_us"])
n = len(done)
w = min(100_000, n // 10) or n
first = w / max((done[w - 1] - done[0]) / 1e6, 1e-9)
last = w / max((done[-1] - done[-w]) / 1e6, 1e-9)
raw = run["raw_ed25519_verify_per_s_all_cores"]  # the mean of the measurements before and after the run
# loadgen before issue 13's tenth pass measured once, before the run (BIN_DIR of an older build).
ends = run.get("raw_ed25519_verify_per_s_before_and_after", [raw, None])
cpu_s = (utime + stime) / ticks
doc = {
    "what": f"one node, embedded engine, loadgen on the same cores, {os.environ['CONCURRENCY']} connections, max rate, one growing ledger",
    "connections": int(os.environ["CONCURRENCY"]),
    "machine": run["machine"], "git": run["git"], "binaries": binaries, "tx_bytes": run["workload"]["tx_bytes"], "count": count,
    "durability": run["durability"],
    "accepted_tps": run["accepted"]["tx_per_s"], "committed": n, "committed_tps": run["committed"]["tx_per_s"],
    "commit_p99_ms": run["committed"]["latency_ms"]["p99"],
    "window": w, "first_window_tps": first, "last_window_tps": last, "last_to_first": last / first,
    "raw_ed25519_verify_per_s_all_cores": raw, "committed_to_raw_verify": run["committed"]["tx_per_s"] / raw,
    "raw_ed25519_verify_per_s_before_and_after": ends, "raw_verify_drift": run.get("raw_verify_drift"),
    "node_peak_rss_mib": hwm_kb / 1024, "node_rss_at_end_mib": rss_kb / 1024,
    "node_cpu_us_per_committed_tx": cpu_s * 1e6 / max(n, 1),
    "node_cpu_us_per_committed_tx_by_thread": {k: v / ticks * 1e6 / max(n, 1) for k, v in sorted(per_thread.items(), key=lambda kv: -kv[1])},
    "stored_bytes": stored, "stored_bytes_per_tx": stored / max(n, 1),
    "stored_to_tx_size": stored / max(n, 1) / run["workload"]["tx_bytes"],
    "invalid": run["invalid"],
}
json.dump(doc, open(out, "w"), indent=2)
how_raw = f"mean of {ends[0]:,.0f} before and {ends[1]:,.0f} after" if ends[1] else "measured once, before the run, by an older loadgen"
print(f"one node, {doc['tx_bytes']} B CREATEs, {n:,} committed of {count:,}: accepted {doc['accepted_tps']:,.0f} tx/s, committed {doc['committed_tps']:,.0f} tx/s "
      f"(p99 {doc['commit_p99_ms']:,.0f} ms); raw verify {raw:,.0f}/s ({how_raw}) → ratio {doc['committed_to_raw_verify']:.2f}")
# Past ±10 % of drift, loadgen has printed a NOTE above (its stderr reaches the console).
print(f"first {w:,} committed at {first:,.0f} tx/s, last {w:,} at {last:,.0f} tx/s → last/first {doc['last_to_first']:.2f}")
print(f"node: peak RSS {doc['node_peak_rss_mib']:,.0f} MiB, CPU {doc['node_cpu_us_per_committed_tx']:.0f} µs per committed tx; stored {doc['stored_bytes_per_tx']:,.0f} B per tx ({doc['stored_to_tx_size']:.2f}× its size)")
print("node CPU µs per committed tx by thread: " + ", ".join(f"{k} {v:.0f}" for k, v in doc["node_cpu_us_per_committed_tx_by_thread"].items() if v >= 1))
for r in doc["invalid"]:
    print(f"INVALID: {r}")
print(f"wrote {out}")
EOF
