#!/usr/bin/env python3
"""Writes the Grafana dashboards in monitor/grafana/dashboards/ from the panel lists below.

One place says which query draws which metric; the JSON files are its output (committed, so
Grafana and reviewers read plain JSON). `python3 monitor/grafana/build_dashboards.py` rewrites
them; the monitoring test fails when they differ from what this script writes.

Measurements are named as Telegraf's statsd input writes them (`cairn.tx.accepted` becomes
`cairn_tx_accepted`, tags `node`, `role`, `metric_type`, ...). Counters arrive as per-interval
deltas (`delete_counters = true`), so a rate is `sum("value")` over the Grafana interval divided
by its length; timers have the `<P>_percentile` fields of telegraf.conf's `percentiles`.
"""
import json
import pathlib
import sys

DS = {"type": "influxdb", "uid": "cairn-influx"}
OUT = pathlib.Path(__file__).resolve().parent / "dashboards"


def rate(measurement, by=(), where="", per_second=True):
    """Per-second rate of a counter (sum of the per-interval deltas / interval length)."""
    scale = " * 1000 / $__interval_ms" if per_second else ""
    group = "".join(f', "{t}"' for t in by)
    return f'SELECT sum("value"){scale} FROM "{measurement}" WHERE $timeFilter{where} GROUP BY time($__interval){group} fill(0)'


def pct(measurement, field, by=(), where=""):
    """A percentile field of a timer (Telegraf computes it per flush interval)."""
    group = "".join(f', "{t}"' for t in by)
    return f'SELECT mean("{field}") FROM "{measurement}" WHERE $timeFilter{where} GROUP BY time($__interval){group} fill(null)'


def level(measurement, by=(), where="", agg="last"):
    """A gauge: its last value per interval."""
    group = "".join(f', "{t}"' for t in by)
    return f'SELECT {agg}("value") FROM "{measurement}" WHERE $timeFilter{where} GROUP BY time($__interval){group} fill(null)'


def host(measurement, field, agg="mean", by=("host",), derivative=False):
    """A Telegraf host input field (cumulative ones as a per-second derivative)."""
    group = "".join(f', "{t}"' for t in by)
    sel = f'non_negative_derivative(max("{field}"), 1s)' if derivative else f'{agg}("{field}")'
    return f'SELECT {sel} FROM "{measurement}" WHERE $timeFilter GROUP BY time($__interval){group} fill(null)'


def target(ref, query, alias):
    return {"refId": ref, "datasource": DS, "rawQuery": True, "resultFormat": "time_series", "alias": alias, "query": query}


def panel(title, unit, targets, description):
    """A timeseries panel; `targets` are (query, alias) pairs."""
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DS,
        "fieldConfig": {"defaults": {"unit": unit, "custom": {"lineWidth": 1, "fillOpacity": 10, "spanNulls": True}}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}, "tooltip": {"mode": "multi", "sort": "desc"}},
        "targets": [target(chr(ord("A") + i), q, a) for i, (q, a) in enumerate(targets)],
    }


def row(title):
    return {"type": "row", "title": title, "collapsed": False, "panels": []}


def variable(name, label, query, multi):
    return {
        "name": name, "label": label, "type": "query", "datasource": DS, "query": query, "definition": query,
        "refresh": 2, "sort": 1, "multi": multi, "includeAll": multi, "hide": 0, "options": [],
    }


def dashboard(uid, title, description, items, variables=()):
    panels, x, y, pid = [], 0, 0, 1
    for item in items:
        item = dict(item, id=pid)
        pid += 1
        if item["type"] == "row":
            if x:
                x, y = 0, y + 8
            item["gridPos"] = {"x": 0, "y": y, "w": 24, "h": 1}
            y += 1
        else:
            item["gridPos"] = {"x": x, "y": y, "w": 12, "h": 8}
            x, y = (12, y) if x == 0 else (0, y + 8)
        panels.append(item)
    return {
        "uid": uid, "title": title, "description": description, "tags": ["cairn"], "editable": False,
        "schemaVersion": 39, "version": 1, "refresh": "5s", "time": {"from": "now-15m", "to": "now"},
        "timezone": "browser", "graphTooltip": 1, "fiscalYearStartMonth": 0, "liveNow": False,
        "links": [{"title": "Cairn dashboards", "type": "dashboards", "tags": ["cairn"], "asDropdown": True,
                   "icon": "external link", "includeVars": False, "keepTime": True, "targetBlank": False, "tooltip": "", "url": ""}],
        "annotations": {"list": []},
        "templating": {"list": list(variables)},
        "panels": panels,
    }


NODE = ' AND "node" =~ /^$node$/'
RUN = ' AND "run" =~ /^$run$/'


def overview():
    return dashboard("cairn-overview", "Cairn cluster overview",
                     "Every node of the federation: accepted vs committed, latencies, backlog, blocks, votes, resources.", [
        row("Throughput"),
        panel("Accepted vs committed tx/s (all nodes)", "short", [
            (rate("cairn_tx_accepted"), "accepted (202)"), (rate("cairn_tx_committed"), "committed (VALID, summed over nodes)")],
            "Accepted: answered 202 by any node. Committed is counted by every node that applies a block, so with N nodes it is N times the federation's rate."),
        panel("Accepted tx/s per node", "short", [(rate("cairn_tx_accepted", ("node",)), "$tag_node")],
              "Transactions each node answered 202 (durable in the engine's backlog)."),
        panel("Committed tx/s per node", "short", [(rate("cairn_tx_committed", ("node",)), "$tag_node")],
              "Transactions each node applied from blocks decided VALID: equal lines mean every node keeps up."),
        panel("Rejected tx/s by reason", "short", [(rate("cairn_tx_rejected", ("reason",)), "$tag_reason")],
              "Refusals by BigchainDB error class (or Unavailable when the engine is down)."),
        row("Latency"),
        panel("Block decision latency (µs)", "µs", [
            (pct("cairn_block_decision_us", "50_percentile", ("node",)), "p50 $tag_node"),
            (pct("cairn_block_decision_us", "99_percentile", ("node",)), "p99 $tag_node")],
            "From a node reading a block to its decision being applied."),
        panel("Ingest validation and engine publish p99 (µs)", "µs", [
            (pct("cairn_tx_validation_us", "99_percentile", ("node",)), "validation $tag_node"),
            (pct("cairn_engine_publish_us", "99_percentile", ("node",)), "engine publish $tag_node")],
            "Per-transaction validation (sampled at statsd.rate) and one group commit into the engine."),
        panel("API request time p99 by route (µs)", "µs", [(pct("cairn_api_request_us", "99_percentile", ("route", "status")), "$tag_route $tag_status")],
              "HTTP handling time per route and status, all nodes (sampled at statsd.rate)."),
        panel("Backlog depth (all partitions)", "short", [
            ('SELECT sum("depth") FROM (SELECT last("value") AS "depth" FROM "cairn_backlog_depth" WHERE $timeFilter GROUP BY time($__interval), "node", "partition") WHERE $timeFilter GROUP BY time($__interval), "node" fill(null)', "$tag_node")],
            "Accepted transactions not yet in a block, as each node sees the partitions."),
        row("Blocks and votes"),
        panel("Blocks built per second", "short", [(rate("cairn_block_built", ("node",)), "$tag_node")],
              "Blocks each node built from its backlog partitions."),
        panel("Block size (transactions)", "short", [
            (pct("cairn_block_size_txs", "50_percentile", ("node",)), "median $tag_node"), (pct("cairn_block_size_txs", "99_percentile", ("node",)), "p99 $tag_node")],
            "Transactions per block: bigger blocks under load mean fewer votes per transaction."),
        panel("Votes cast per second", "short", [(rate("cairn_vote_cast", ("valid",)), "valid=$tag_valid")],
              "Votes by verdict, all nodes. Any valid=false line means a node found a block invalid."),
        panel("Blocks decided per second (valid / invalid)", "short", [(rate("cairn_block_decided", ("decision",)), "$tag_decision")],
              "Decisions by majority of the keyring; invalid blocks return their valid transactions to the backlog."),
        panel("Requeued tx/s", "short", [(rate("cairn_tx_requeued", ("node",)), "$tag_node")],
              "Valid transactions of an INVALID block returned to the backlog (normally zero)."),
        panel("Applied height", "short", [(level("cairn_state_applied_height", ("node",)), "$tag_node")],
              "Blocks applied to each node's state: nodes should move together."),
        row("Resources"),
        panel("Node process CPU (% of one core)", "percent", [
            ('SELECT sum("value") / 10 / $__interval_ms FROM "cairn_process_cpu_us" WHERE $timeFilter GROUP BY time($__interval), "node" fill(0)', "$tag_node")],
            "CPU time of each cairn process (all threads); 200 means two cores busy."),
        panel("Node process memory (RSS)", "bytes", [(level("cairn_process_rss_bytes", ("node",)), "$tag_node")],
              "Resident memory of each cairn process."),
        panel("Monitor host CPU and load", "percent", [
            (host("cpu", "usage_active", by=("host",)), "cpu active $tag_host"), (host("system", "load1"), "load1 $tag_host")],
            "Telegraf's host inputs on the machine running the monitor stack."),
        panel("Monitor host memory, disk, network", "short", [
            (host("mem", "used_percent"), "mem used % $tag_host"), (host("disk", "used_percent", by=("host", "path")), "disk used % $tag_path"),
            (host("net", "bytes_recv", by=("host", "interface"), derivative=True), "net rx B/s $tag_interface"),
            (host("diskio", "write_bytes", by=("host", "name"), derivative=True), "disk write B/s $tag_name")],
            "Telegraf's mem, disk, net and diskio inputs on the monitor machine."),
        panel("Metric lines dropped per second", "short", [(rate("cairn_metrics_dropped", ("node",)), "$tag_node")],
              "StatsD lines a node dropped because its send queue was full (normally zero)."),
    ])


def load_test():
    return dashboard("cairn-load-test", "Cairn load test",
                     "loadgen's view (offered, accepted, committed, latency) over the nodes' own view, for one run.", [
        row("Load (loadgen)"),
        panel("Offered, sent, accepted, committed tx/s (loadgen)", "short", [
            (rate("loadgen_tx_offered", where=RUN), "offered"), (rate("loadgen_tx_sent", where=RUN), "sent"),
            (rate("loadgen_tx_accepted", where=RUN), "accepted"), (rate("loadgen_tx_committed", where=RUN), "committed")],
            "What loadgen scheduled, sent, got 202 for, and saw VALID on the stream. Offered above sent means the generator fell behind."),
        panel("Rejected tx/s by reason (loadgen)", "short", [(rate("loadgen_tx_rejected", ("reason",), where=RUN), "$tag_reason")],
              "Refusals as loadgen saw them: HTTP status, or transport when no answer came."),
        panel("Accept latency (µs, from scheduled send)", "µs", [
            (pct("loadgen_accept_latency_us", p, where=RUN), f"p{p.split('_')[0]}") for p in ("50_percentile", "99_percentile", "99.9_percentile")],
            "Scheduled send time to 202 (open loop: queueing in the generator counts)."),
        panel("Commit latency (µs, from scheduled send)", "µs", [
            (pct("loadgen_commit_latency_us", p, where=RUN), f"p{p.split('_')[0]}") for p in ("50_percentile", "99_percentile", "99.9_percentile")],
            "Scheduled send time to VALID on the commit stream."),
        panel("Requests in flight (loadgen)", "short", [(level("loadgen_tx_in_flight", where=RUN), "in flight")],
              "POSTs sent and not yet answered."),
        row("Nodes"),
        panel("Nodes: accepted vs committed tx/s", "short", [
            (rate("cairn_tx_accepted", ("node",)), "accepted $tag_node"), (rate("cairn_tx_committed", ("node",)), "committed $tag_node")],
            "The same seconds as seen by each node."),
        panel("Nodes: block decision p99 and validation p99 (µs)", "µs", [
            (pct("cairn_block_decision_us", "99_percentile", ("node",)), "decision $tag_node"),
            (pct("cairn_tx_validation_us", "99_percentile", ("node",)), "validation $tag_node")],
            "Where commit latency comes from."),
        panel("Nodes: backlog depth and CPU", "short", [
            ('SELECT sum("depth") FROM (SELECT last("value") AS "depth" FROM "cairn_backlog_depth" WHERE $timeFilter GROUP BY time($__interval), "node", "partition") WHERE $timeFilter GROUP BY time($__interval), "node" fill(null)', "backlog $tag_node"),
            ('SELECT sum("value") / 10 / $__interval_ms FROM "cairn_process_cpu_us" WHERE $timeFilter GROUP BY time($__interval), "node" fill(0)', "cpu % $tag_node")],
            "A growing backlog with CPU at the core count means the nodes are the bottleneck."),
    ], variables=[variable("run", "Run", 'SHOW TAG VALUES FROM "loadgen_tx_sent" WITH KEY = "run"', False)])


def node():
    return dashboard("cairn-node", "Cairn node", "One node in detail.", [
        row("Transactions"),
        panel("Received, accepted, rejected, committed tx/s", "short", [
            (rate("cairn_tx_received", where=NODE), "received"), (rate("cairn_tx_accepted", where=NODE), "accepted"),
            (rate("cairn_tx_rejected", where=NODE), "rejected"), (rate("cairn_tx_committed", where=NODE), "committed")],
            "This node's ingest and commits."),
        panel("Rejected tx/s by reason", "short", [(rate("cairn_tx_rejected", ("reason",), where=NODE), "$tag_reason")],
              "Refusals by BigchainDB error class."),
        panel("Ingest validation time (µs)", "µs", [
            (pct("cairn_tx_validation_us", p, where=NODE), f"p{p.split('_')[0]}") for p in ("50_percentile", "90_percentile", "99_percentile", "99.9_percentile")],
            "Parse, id, signatures and state checks of one transaction (sampled at statsd.rate)."),
        panel("Signature batches", "short", [
            (pct("cairn_sig_batch_us", "50_percentile", where=NODE), "batch time p50 (µs)"), (pct("cairn_sig_batch_us", "99_percentile", where=NODE), "batch time p99 (µs)"),
            (pct("cairn_sig_batch_size", "50_percentile", where=NODE), "batch size p50")],
            "Ingest signature checks are batched: larger batches under load are cheaper per signature."),
        panel("Engine publish (µs)", "µs", [
            (pct("cairn_engine_publish_us", p, where=NODE), f"p{p.split('_')[0]}") for p in ("50_percentile", "99_percentile")],
            "One group commit of accepted transactions into the engine's backlog."),
        panel("Backlog depth per partition", "short", [(level("cairn_backlog_depth", ("partition",), where=NODE), "partition $tag_partition")],
              "Accepted transactions not yet in a block."),
        row("Blocks"),
        panel("Blocks built and decided per second", "short", [
            (rate("cairn_block_built", where=NODE), "built"), (rate("cairn_block_decided", ("decision",), where=NODE), "decided $tag_decision")],
            "Blocks this node built, and decisions it applied."),
        panel("Votes cast per second", "short", [(rate("cairn_vote_cast", ("valid",), where=NODE), "valid=$tag_valid")],
              "This node's votes by verdict."),
        panel("Block size (transactions)", "short", [
            (pct("cairn_block_size_txs", p, where=NODE), f"p{p.split('_')[0]}") for p in ("50_percentile", "99_percentile")],
            "Transactions in each block this node built."),
        panel("Block decision latency (µs)", "µs", [
            (pct("cairn_block_decision_us", p, where=NODE), f"p{p.split('_')[0]}") for p in ("50_percentile", "90_percentile", "99_percentile")],
            "From reading a block to applying its decision."),
        panel("Applied height and requeued tx/s", "short", [
            (level("cairn_state_applied_height", where=NODE), "applied height"), (rate("cairn_tx_requeued", where=NODE), "requeued tx/s")],
            "Blocks applied to state; valid transactions of invalid blocks returned to the backlog."),
        row("API and process"),
        panel("API request time by route (µs)", "µs", [
            (pct("cairn_api_request_us", "50_percentile", ("route", "status"), where=NODE), "p50 $tag_route $tag_status"),
            (pct("cairn_api_request_us", "99_percentile", ("route", "status"), where=NODE), "p99 $tag_route $tag_status")],
            "HTTP handling time (sampled at statsd.rate)."),
        panel("Websocket clients", "short", [(level("cairn_ws_clients", where=NODE), "clients")],
              "Open valid_transactions stream connections."),
        panel("Process CPU (% of one core) and memory", "short", [
            ('SELECT sum("value") / 10 / $__interval_ms FROM "cairn_process_cpu_us" WHERE $timeFilter' + NODE + ' GROUP BY time($__interval) fill(0)', "cpu %"),
            (level("cairn_process_rss_bytes", where=NODE), "rss bytes")],
            "CPU time and resident memory of this cairn process."),
        panel("Metric lines dropped per second", "short", [(rate("cairn_metrics_dropped", where=NODE), "dropped")],
              "StatsD lines dropped because the send queue was full (normally zero)."),
    ], variables=[variable("node", "Node", 'SHOW TAG VALUES FROM "cairn_tx_received" WITH KEY = "node"', False)])


def render():
    return {f"{d['uid'].removeprefix('cairn-')}.json": json.dumps(d, indent=2, ensure_ascii=False) + "\n"
            for d in (overview(), load_test(), node())}


if __name__ == "__main__":
    files = render()
    if sys.argv[1:] == ["--check"]:
        stale = [n for n, text in files.items() if not (OUT / n).exists() or (OUT / n).read_text(encoding="utf-8") != text]
        if stale:
            sys.exit(f"monitor/grafana/dashboards: {', '.join(stale)} differ from build_dashboards.py: run python3 monitor/grafana/build_dashboards.py and commit")
        print(f"dashboards up to date: {', '.join(sorted(files))}")
    else:
        for n, text in files.items():
            (OUT / n).write_text(text, encoding="utf-8")
        print(f"wrote {', '.join(sorted(files))} in {OUT}")
