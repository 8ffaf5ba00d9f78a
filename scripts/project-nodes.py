#!/usr/bin/env python3
"""On paper: committed tx/s for 1-32 nodes of a stated instance size, from costs measured on
this machine (results/node-<label>.json from scripts/bench-node.sh, results/stages-<label>.json
from scripts/bench-stages.sh). Prints a markdown table for docs/performance.md.

Model (every node validates every transaction; only the receiving node runs its ingest):
  C(N) = ingest / N + foreign * (N - 1) / N + every + engine      [CPU µs per tx per node]
  ingest  = node threads that serve the POST: tokio-rt-worker + sig-verifier + backlog-writer
  every   = consensus + block-builder + fjall:worker + metrics (all nodes, measured)
  foreign = parse + id_hash + signatures + backlog_write (a node re-checks and stores the bodies
            it did not ingest; stage costs) — 0 for N = 1
  engine  = nats-server CPU per tx per node (NOT measured here; an assumption, flag --engine-us)
  committed tx/s = vcpus * 1e6 * usable / C(N)
Usage: scripts/project-nodes.py [LABEL] [--vcpus 8] [--usable 0.8] [--engine-us 30]
"""
import argparse
import json

p = argparse.ArgumentParser()
p.add_argument("label", nargs="?", default="after")
p.add_argument("--vcpus", type=int, default=8)
p.add_argument("--usable", type=float, default=0.8)
p.add_argument("--engine-us", type=float, default=30.0)
a = p.parse_args()
node = json.load(open(f"results/node-{a.label}.json"))
stages = {s["stage"]: s["cpu_us_per_tx"] for s in json.load(open(f"results/stages-{a.label}.json"))["stages"]}
t = node["node_cpu_us_per_committed_tx_by_thread"]
ingest = sum(t.get(k, 0) for k in ("tokio-rt-worker", "sig-verifier", "backlog-writer"))
every = sum(v for k, v in t.items() if k not in ("tokio-rt-worker", "sig-verifier", "backlog-writer"))
foreign = sum(stages[k] for k in ("parse", "id_hash", "signatures", "backlog_write"))
print(f"measured on this machine: ingest {ingest:.0f} µs, every node {every:.0f} µs, foreign bodies {foreign:.0f} µs per tx; "
      f"assumed: engine {a.engine_us:.0f} µs per tx per node, {a.vcpus} vCPUs per node at this machine's per-core speed, {a.usable:.0%} usable")
print()
print("| nodes | CPU µs per tx per node | projected committed tx/s |")
print("|---:|---:|---:|")
for n in (1, 2, 4, 8, 16, 32):
    c = ingest / n + (foreign * (n - 1) / n if n > 1 else 0) + every + (a.engine_us if n > 1 else 0)
    print(f"| {n} | {c:.0f} | {a.vcpus * 1e6 * a.usable / c:,.0f} |")
