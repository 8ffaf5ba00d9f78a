#!/usr/bin/env bash
# Benchmark: accepted and committed tx/s of 765-byte CREATEs for federations of 1, 2 and 3
# nodes on this machine (`cairn dev-cluster`: one nats-server + one node each, all on
# loopback), beside the raw JetStream publish rate of messages of the same size measured in
# the same run. Writes results/federation-<n>.json (with each member's cairn and nats-server CPU
# per committed tx, `member_cpu_us_per_committed_tx`) and appends a row to results/federation-<n>.csv.
# Usage: scripts/bench-federation.sh [COUNT] [NODE COUNTS...]   (default: 20000 1 2 3)
#        RATE=1000 scripts/bench-federation.sh 10000 4   (open loop at 1000 tx/s: latency at a
#        fixed offered rate; results in results/federation-<n>-rate<RATE>.json)
#        BIN_DIR=/path/with/cairn+loadgen LABEL=before scripts/bench-federation.sh 20000 3 4
#        (binaries of another build; results in results/federation-<n>-<LABEL>.json)
#        CONCURRENCY=128 scripts/bench-federation.sh 40000 3 4   (requests in flight per member,
#        loadgen's --concurrency: 64 unless set. Before issue 13's sixth pass the flag counted
#        all members together: 64, then 256 in the fifth pass. A backlog message carries what a
#        member has in flight, and nats-server's cost is per message: 3 members measured ~9
#        transactions per message with 21 per member in flight and ~29 with 85, where each
#        member's nats-server cost half as much per transaction and 30-50 % more was committed;
#        docs/performance.md, fifth and sixth passes)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/cargo-target.sh
count=${1:-20000}
rate=${RATE:-0}
suffix=$([ "$rate" = 0 ] && echo "" || echo "-rate$rate")${LABEL:+-$LABEL}
bin=${BIN_DIR:-$(cargo_target_dir)/release}
shift || true
sizes=("${@:-1 2 3}")
[ -n "${BIN_DIR:-}" ] || cargo build --release -q -p cairn-node -p cairn-loadgen
mkdir -p results
for n in ${sizes[@]}; do
  dir=$(mktemp -d /tmp/cairn-bench-XXXX)
  "$bin/cairn" dev-cluster --nodes "$n" --dir "$dir/c" --base-port 29984 > "$dir/cluster.out" 2>&1 &
  pid=$!
  trap 'kill $pid 2>/dev/null || true' EXIT
  for _ in $(seq 1 600); do grep -q "Federation of" "$dir/cluster.out" && break; kill -0 $pid || { cat "$dir/cluster.out"; exit 1; }; sleep 0.1; done
  targets=$(seq 0 $((n - 1)) | sed 's/.*/http:\/\/127.0.0.1:$((29984 + 10 * &))/' | while read -r l; do eval echo "$l"; done | paste -sd,)
  "$bin/loadgen" --target "$targets" --count "$count" --concurrency "${CONCURRENCY:-64}" --rate "$rate" \
    --raw-jetstream "$dir/c/node0/config.toml" --plain \
    --durability "JetStream file store, R=$(( n < 3 ? n : 3 )), 202 after a quorum ack (nats-server default sync_interval: fsync every 2 min)" \
    --out "results/federation-$n$suffix.json" > "$dir/loadgen.out" 2>&1 &
  lg=$!
  # CPU time of the members' processes (nats-server, cairn) while transactions are sent and
  # committed: from the start of sending (after loadgen's raw JetStream baseline and its
  # signing) to the end of the run.
  cpu_now() { for p in $(pgrep -f "$dir/c/node"); do awk '{print $2, $14 + $15}' "/proc/$p/stat"; done | paste -sd, -; }
  until grep -q "sending: started" "$dir/loadgen.out"; do kill -0 $lg 2>/dev/null || break; sleep 0.05; done
  cpu_start=$(cpu_now)
  wait $lg || { cat "$dir/loadgen.out"; exit 1; }
  cpu_end=$(cpu_now)
  kill -TERM $pid; wait $pid || true
  python3 - "results/federation-$n$suffix.json" "$n" "$cpu_start" "$cpu_end" "$(getconf CLK_TCK)" <<'EOF'
import json, sys
path, n, start, end, ticks = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
doc = json.load(open(path))
per = {}
for sign, cpu in ((-1, start), (1, end)):
    for item in filter(None, cpu.split(",")):
        comm, t = item.split()
        comm = comm.strip("()")
        if comm in ("cairn", "nats-server"):  # not loadgen, which names node0's config too
            per[comm] = per.get(comm, 0) + sign * int(t)
committed = doc["committed"]["count"]
doc["member_cpu_us_per_committed_tx"] = {k: round(v / ticks * 1e6 / committed / n, 1) for k, v in per.items()} if committed else {}
doc["member_cpu_note"] = "CPU of each member's cairn and nats-server from the start of sending to the end of the run, per committed tx, averaged over members"
json.dump(doc, open(path, "w"), indent=2)
print(f"{n} members: CPU per committed tx per member: " + ", ".join(f"{k} {v} µs" for k, v in doc["member_cpu_us_per_committed_tx"].items()))
drift = doc.get("raw_verify_drift") or 0  # absent from an older loadgen's results
if abs(drift) > 0.10:
    print(f"NOTE: {n} members: the raw verify rate moved {drift:+.0%} during the run: this machine's speed was not steady; repeat, alternating builds when comparing them")
EOF
  rm -rf "$dir"
done
tail -q -n1 $(for n in ${sizes[@]}; do echo results/federation-$n$suffix.csv; done)
