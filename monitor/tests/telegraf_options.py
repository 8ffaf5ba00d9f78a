#!/usr/bin/env python3
"""Extracts the option names a Telegraf release accepts for the plugins monitor/ uses, into
monitor/telegraf/options-<tag>.json, which check_files.py holds telegraf.conf to.

Usage: telegraf_options.py <telegraf git dir> <tag>   (e.g. a clone of influxdata/telegraf, v1.39.3)
Sources: each plugin's sample.conf (commented or not), the AgentConfig struct in
config/config.go (snake_case of its fields), and the general per-plugin options config.go
accepts for every plugin.
"""
import json
import pathlib
import re
import subprocess
import sys

PLUGINS = ["inputs/statsd", "inputs/cpu", "inputs/mem", "inputs/system", "inputs/net", "inputs/disk", "inputs/diskio", "outputs/influxdb"]


def show(repo, tag, path):
    return subprocess.run(["git", "--git-dir", repo, "show", f"{tag}:{path}"], check=True, capture_output=True, text=True).stdout


def snake(name):
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower().replace("u_r_l", "url")


def main(repo, tag):
    config = show(repo, tag, "config/config.go")
    agent_struct = re.search(r"type AgentConfig struct \{(.*?)\n\}", config, re.S).group(1)
    agent = set()
    for line in agent_struct.splitlines():
        m = re.match(r"\s+([A-Z]\w*)\s+\S+(?:\s+`toml:\"(\w+)\"[^`]*`)?", line)
        if m:
            agent.add(m.group(2) or snake(m.group(1)))
    general = set(re.findall(r'"(\w+)"', re.search(r"// General options to ignore(.*?)// secret store", config, re.S).group(1)))
    plugins = {}
    for p in PLUGINS:
        sample = show(repo, tag, f"plugins/{p}/sample.conf")
        plugins[p.replace("/", ".")] = sorted(set(re.findall(r"^\s*#?\s*([a-z_]+)\s*=", sample, re.M)))
    out = {"telegraf": tag, "agent": sorted(agent), "every_plugin": sorted(general), "plugins": plugins}
    dest = pathlib.Path(__file__).resolve().parent.parent / "telegraf" / f"options-{tag}.json"
    dest.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {dest}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(*sys.argv[1:])
