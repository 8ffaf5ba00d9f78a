#!/usr/bin/env python3
"""Static checks of the monitor stack's files (what can be checked without Telegraf, Grafana or
a Docker daemon; the dashboards' queries are run against a real InfluxDB by
node/tests/monitoring.rs):

- every dashboard validates against Grafana's dashboard schema (generated from @grafana/schema,
  see grafana/dashboard.schema.NOTICE) and is what build_dashboards.py writes;
- every target is a raw InfluxQL query on the provisioned datasource's uid;
- telegraf.conf parses as TOML and uses only options Telegraf v1.39.3 has; its statsd input
  reads DogStatsD tags, listens where cairn sends by default, and writes to the database the
  Grafana datasource reads;
- the provisioning files agree with docker-compose.yml's mounts, and `docker-compose config`
  accepts the compose file with a Grafana password and refuses it without one.

Usage: check_files.py <docker-compose binary>
"""
import json
import os
import pathlib
import re
import subprocess
import sys
import tomllib

import jsonschema
import yaml

MONITOR = pathlib.Path(__file__).resolve().parent.parent
failures = []


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        failures.append(what)


def walk_panels(panels):
    for p in panels:
        yield p
        yield from walk_panels(p.get("panels", []))


def dashboards(ds_uid):
    schema = json.loads((MONITOR / "grafana/dashboard.schema.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    build = subprocess.run([sys.executable, str(MONITOR / "grafana/build_dashboards.py"), "--check"], capture_output=True, text=True)
    check(build.returncode == 0, f"dashboards are what build_dashboards.py writes {build.stdout.strip()}{build.stderr.strip()}")
    uids = set()
    files = sorted((MONITOR / "grafana/dashboards").glob("*.json"))
    check(len(files) == 3, f"three dashboards ({', '.join(f.name for f in files)})")
    for f in files:
        d = json.loads(f.read_text())
        errors = [f"{'/'.join(map(str, e.path))}: {e.message[:200]}" for e in validator.iter_errors(d)]
        check(not errors, f"{f.name} validates against Grafana's dashboard schema {errors[:3]}")
        uids.add(d.get("uid"))
        ids = [p["id"] for p in walk_panels(d["panels"])]
        check(len(ids) == len(set(ids)), f"{f.name}: panel ids unique")
        for p in walk_panels(d["panels"]):
            if p["type"] == "row":
                continue
            targets = p.get("targets", [])
            check(bool(targets), f"{f.name} / {p['title']}: has queries")
            for t in targets:
                check(t.get("rawQuery") is True and bool(t.get("query")) and t.get("datasource", {}).get("uid") == ds_uid,
                      f"{f.name} / {p['title']} / {t.get('refId')}: raw InfluxQL on datasource {ds_uid}")
        for v in d.get("templating", {}).get("list", []):
            check(v.get("datasource", {}).get("uid") == ds_uid, f"{f.name}: variable ${v['name']} on datasource {ds_uid}")
    check(len(uids) == len(files), "dashboard uids unique")


def telegraf(db):
    conf = tomllib.loads((MONITOR / "telegraf/telegraf.conf").read_text())
    compose = yaml.safe_load((MONITOR / "docker-compose.yml").read_text())
    image_tag = compose["services"]["telegraf"]["image"].split(":")[1]
    options_file = MONITOR / f"telegraf/options-v{image_tag}.json"
    check(options_file.exists(), f"option list for the pinned Telegraf {image_tag} exists ({options_file.name})")
    allowed = json.loads(options_file.read_text())
    unknown = [k for k in conf.get("agent", {}) if k not in allowed["agent"]]
    check(not unknown, f"[agent] options exist in Telegraf {image_tag} {unknown}")
    for kind in ("inputs", "outputs"):
        for name, instances in conf.get(kind, {}).items():
            plugin = f"{kind}.{name}"
            check(plugin in allowed["plugins"], f"plugin {plugin} is one whose options are listed")
            for inst in instances:
                unknown = [k for k in inst if k not in allowed["plugins"].get(plugin, []) and k not in allowed["every_plugin"]]
                check(not unknown, f"[[{plugin}]] options exist in Telegraf {image_tag} {unknown}")
    statsd = conf["inputs"]["statsd"][0]
    check(statsd.get("datadog_extensions") is True, "statsd: datadog_extensions = true (cairn sends DogStatsD tags)")
    check("parse_data_dog_tags" not in statsd, "statsd: no parse_data_dog_tags (removed in Telegraf 1.35)")
    check(statsd.get("service_address", "").endswith(":8125"), "statsd listens on 8125, cairn's default statsd.port")
    check(statsd.get("metric_separator", "_") == "_", "statsd: metric_separator '_' (the dashboards' measurement names)")
    check(all(statsd.get(f"delete_{k}") is True for k in ("counters", "gauges", "timings")), "statsd: counters are per-interval deltas (delete_* = true)")
    check(sorted(statsd.get("percentiles", [])) == [50.0, 90.0, 99.0, 99.9], "statsd: percentiles 50/90/99/99.9 (the dashboards' fields)")
    check(conf["outputs"]["influxdb"][0].get("database") == db, f"telegraf writes to the datasource's database {db}")
    for host_input in ("cpu", "mem", "net", "disk", "diskio", "system"):
        check(host_input in conf["inputs"], f"host input {host_input}")
    return compose


def compose_file(compose_bin, compose, dash_path):
    images = {n: s["image"] for n, s in compose["services"].items()}
    check(all(re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+", i) for i in images.values()), f"every image pinned to an exact version {images}")
    grafana = compose["services"]["grafana"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"]}
    check(mounts.get(dash_path) == "./grafana/dashboards", f"dashboards provider path {dash_path} is where compose mounts grafana/dashboards")
    check(mounts.get("/etc/grafana/provisioning") == "./grafana/provisioning", "provisioning mounted")
    check("GF_SECURITY_ADMIN_PASSWORD" in grafana["environment"] and ":?" in grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"],
          "Grafana's admin password must come from the environment")
    home = grafana["environment"].get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH", "")
    check(home.startswith(dash_path + "/") and (MONITOR / "grafana/dashboards" / home.rsplit("/", 1)[1]).exists(), f"home dashboard {home} exists")
    env = {k: v for k, v in os.environ.items() if k != "GRAFANA_ADMIN_PASSWORD"}
    args = [compose_bin, "-f", str(MONITOR / "docker-compose.yml"), "config", "--quiet"]
    without = subprocess.run(args, capture_output=True, text=True, env=env)
    check(without.returncode != 0 and "GRAFANA_ADMIN_PASSWORD" in without.stderr, "compose refuses to start without GRAFANA_ADMIN_PASSWORD")
    ok = subprocess.run(args, capture_output=True, text=True, env={**env, "GRAFANA_ADMIN_PASSWORD": "x" * 24})
    check(ok.returncode == 0, f"docker-compose config accepts the file {ok.stderr.strip()[:300]}")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    ds = yaml.safe_load((MONITOR / "grafana/provisioning/datasources/influxdb.yaml").read_text())["datasources"][0]
    prov = yaml.safe_load((MONITOR / "grafana/provisioning/dashboards/cairn.yaml").read_text())["providers"][0]
    check("database" not in ds and ds["jsonData"].get("dbName") == "telegraf", "datasource reads jsonData.dbName telegraf (top-level database is deprecated)")
    dashboards(ds["uid"])
    compose = telegraf(ds["jsonData"]["dbName"])
    compose_file(sys.argv[1], compose, prov["options"]["path"])
    if failures:
        sys.exit(f"{len(failures)} monitor file check(s) failed")
    print("monitor files: all checks passed")


if __name__ == "__main__":
    main()
