#!/usr/bin/env bash
# Benchmark: the single node's CPU per transaction, stage by stage (node/benches/stages.rs),
# as CPU µs (native run of COUNT transactions) and as instructions (valgrind callgrind, which
# counts the same on a busy or a quiet machine: stage k = total(upto k) − total(upto k−1)).
# Writes results/stages-<label>.json and prints a markdown table for docs/performance.md.
# Usage: scripts/bench-stages.sh [LABEL] [COUNT] [CALLGRIND_COUNT]   (default: now 20000 2000)
set -euo pipefail
cd "$(dirname "$0")/.."
label=${1:-now}
count=${2:-20000}
cg_count=${3:-2000}
command -v valgrind >/dev/null || { echo "valgrind is missing: apt-get install valgrind" >&2; exit 1; }
bin=$(cargo bench -p cairn-node --bench stages --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import sys,json
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m["target"]["name"]=="stages" and m.get("executable"): print(m["executable"])' | tail -1)
[ -x "$bin" ] || { echo "could not build the stages benchmark" >&2; exit 1; }
mkdir -p results
native=results/stages-$label-native.json
"$bin" --txs "$count" --json "$native" >&2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
stages=(none parse id_hash signatures stateful backlog_write block_build vote tally apply events)
for s in "${stages[@]}"; do
  valgrind --tool=callgrind --callgrind-out-file="$tmp/$s.out" "$bin" --txs "$cg_count" --upto "$s" >/dev/null 2>"$tmp/$s.err" \
    || { cat "$tmp/$s.err" >&2; exit 1; }
  echo "callgrind: upto $s done" >&2
done
python3 - "$tmp" "$native" "$cg_count" "results/stages-$label.json" "${stages[@]}" <<'EOF'
import json, sys
tmp, native, n, out, stages = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5:]
def total(s):
    # callgrind writes one file per process; "summary:" (or "totals:") holds Ir over all threads.
    for line in open(f"{tmp}/{s}.out"):
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise SystemExit(f"no summary in {s}.out")
totals = [total(s) for s in stages]
doc = json.load(open(native))
for i, row in enumerate(doc["stages"]):
    assert row["stage"] == stages[i + 1]
    row["instructions_per_tx"] = (totals[i + 1] - totals[i]) / n
doc["callgrind_txs"] = n
doc["instructions_per_tx_sum"] = (totals[-1] - totals[0]) / n
json.dump(doc, open(out, "w"), indent=2)
print(f"| stage | includes | CPU µs/tx | instructions/tx |")
print(f"|---|---|---:|---:|")
for r in doc["stages"]:
    print(f"| {r['stage']} | {r['includes']} | {r['cpu_us_per_tx']:.2f} | {r['instructions_per_tx']:,.0f} |")
print(f"| **sum** | | **{doc['cpu_us_per_tx_sum']:.2f}** | **{doc['instructions_per_tx_sum']:,.0f}** |")
print(f"wrote {out}", file=sys.stderr)
EOF
