#!/usr/bin/env python3
"""On paper: committed tx/s for 1-32 nodes of a stated instance size, from costs measured on
this machine (results/node-<label>.json from scripts/bench-node.sh, results/stages-<label>.json
from scripts/bench-stages.sh, optionally results/federation-<n>-<label>.json from
scripts/bench-federation.sh). Prints a markdown table for docs/performance.md.

Model (every node validates every transaction; only the receiving node runs its ingest):
  C(N) = ingest / N + foreign * (N - 1) / N + every + engine      [CPU µs per tx per node]
  ingest  = node threads that serve the POST: tokio-rt-worker + sig-verifier + backlog-writer
  every   = consensus + block-builder + fjall:worker + metrics (all nodes, measured)
  foreign = what a node spends on a transaction it did not ingest. Without --federation: the
            stage costs parse + id_hash + signatures + backlog_write (a lower bound: it leaves
            out reading the body back, the engine client and the follower). With --federation:
            solved from a measured federation of n members on this machine,
            member cairn CPU = ingest / n + foreign * (n - 1) / n + every
  engine  = nats-server CPU per tx per node: measured with --federation (n members sharing
            this machine's cores), else assumed (--engine-us)
  committed tx/s = vcpus * 1e6 * usable / C(N)
Usage: scripts/project-nodes.py [LABEL] [--vcpus 8] [--usable 0.8] [--engine-us 30]
                                [--federation results/federation-3-LABEL.json]
"""
import argparse
import json

p = argparse.ArgumentParser()
p.add_argument("label", nargs="?", default="after")
p.add_argument("--vcpus", type=int, default=8)
p.add_argument("--usable", type=float, default=0.8)
p.add_argument("--engine-us", type=float, default=30.0)
p.add_argument("--federation", help="a bench-federation.sh result with member_cpu_us_per_committed_tx")
a = p.parse_args()


def load(path, made_by):
    try:
        return json.load(open(path))
    except FileNotFoundError:
        raise SystemExit(f"{path} is missing: run {made_by} first")


node = load(f"results/node-{a.label}.json", f"scripts/bench-node.sh {a.label}")
stages = {s["stage"]: s["cpu_us_per_tx"] for s in load(f"results/stages-{a.label}.json", f"scripts/bench-stages.sh {a.label}")["stages"]}
t = node["node_cpu_us_per_committed_tx_by_thread"]
ingest = sum(t.get(k, 0) for k in ("tokio-rt-worker", "sig-verifier", "backlog-writer"))
every = sum(v for k, v in t.items() if k not in ("tokio-rt-worker", "sig-verifier", "backlog-writer"))
foreign = sum(stages[k] for k in ("parse", "id_hash", "signatures", "backlog_write"))
engine, how = a.engine_us, "assumed"
if a.federation:
    fed = load(a.federation, "scripts/bench-federation.sh 20000 3")
    n, cpu = fed["nodes"], fed.get("member_cpu_us_per_committed_tx")
    if not cpu or n < 2:
        raise SystemExit(f"{a.federation} has no per-member CPU of 2 or more members: rerun scripts/bench-federation.sh")
    stage_foreign, foreign = foreign, (cpu["cairn"] - ingest / n - every) * n / (n - 1)
    engine, how = cpu["nats-server"], f"measured with {n} members on this machine"
    print(f"from {a.federation}: a member's cairn {cpu['cairn']:.0f} µs and nats-server {engine:.0f} µs per committed tx; "
          f"foreign solved as {foreign:.0f} µs (the stage costs alone: {stage_foreign:.0f} µs)")
print(f"measured on this machine: ingest {ingest:.0f} µs, every node {every:.0f} µs, foreign bodies {foreign:.0f} µs per tx; "
      f"engine {engine:.0f} µs per tx per node ({how}); assumed: {a.vcpus} vCPUs per node at this machine's per-core speed, {a.usable:.0%} usable")
print()
print("| nodes | CPU µs per tx per node | projected committed tx/s |")
print("|---:|---:|---:|")
for n in (1, 2, 4, 8, 16, 32):
    c = ingest / n + (foreign * (n - 1) / n if n > 1 else 0) + every + (engine if n > 1 else 0)
    print(f"| {n} | {c:.0f} | {a.vcpus * 1e6 * a.usable / c:,.0f} |")
