#!/usr/bin/env python3
"""Renders the Ansible inventory of a cluster made by this Terraform root module.

    terraform output -json > outputs.json
    python3 render_inventory.py outputs.json --key ~/.ssh/cairn --known-hosts known_hosts > inventory.yaml

The inventory has the shape the deployer writes (clusters/<name>/inventory.yaml): groups
cairn_nodes and cairn_monitor, each host's index and private address as host variables, SSH
through your key with host keys checked against --known-hosts (StrictHostKeyChecking=yes; see
README.md for collecting them). Output is JSON, which is valid YAML. Standard library only.
"""

import argparse
import json
import os
import sys


def value(outputs, name):
    """An output's value, from `terraform output -json` (name -> {value, type, sensitive})."""
    if name not in outputs:
        sys.exit(f"error: the outputs have no {name!r}: run `terraform output -json` in terraform/ after `terraform apply`")
    return outputs[name]["value"]


def render(outputs, key, known_hosts, connect):
    hosts = {"cairn_nodes": {}, "cairn_monitor": {}}
    nodes = value(outputs, "nodes")
    monitor = value(outputs, "monitor")
    for h in nodes + ([monitor] if monitor else []):
        address = h["private_ip"] if connect == "private" else h["public_ip"]
        group = "cairn_monitor" if h["role"] == "monitor" else "cairn_nodes"
        hosts[group][f"{h['role']}{h['index']}"] = {
            "ansible_host": address,
            "cairn_index": h["index"],
            "cairn_private_ip": h["private_ip"],
            "cairn_instance_id": h["instance_id"],
            "cairn_instance_type": h["instance_type"],
        }
    return {
        "all": {
            "vars": {
                "ansible_user": value(outputs, "ssh_user"),
                "ansible_ssh_private_key_file": os.path.abspath(key),
                "ansible_ssh_common_args": "-o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o GlobalKnownHostsFile=/dev/null "
                f"-o UserKnownHostsFile={os.path.abspath(known_hosts)}",
                "cairn_cluster": value(outputs, "cluster_name"),
                "cairn_region": value(outputs, "region"),
            },
            "children": {group: {"hosts": members} for group, members in hosts.items()},
        }
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("outputs", help="`terraform output -json` saved to a file, or - for stdin")
    p.add_argument("--key", required=True, help="private key of the ssh_public_key you gave Terraform")
    p.add_argument("--known-hosts", required=True, help="known_hosts file holding the hosts' verified host keys")
    p.add_argument("--connect", choices=["public", "private"], default="public", help="address Ansible dials (private: from inside the VPC)")
    a = p.parse_args()
    text = sys.stdin.read() if a.outputs == "-" else open(a.outputs).read()
    try:
        outputs = json.loads(text)
    except json.JSONDecodeError as e:
        sys.exit(f"error: {a.outputs} is not `terraform output -json`: {e}")
    inventory = render(outputs, a.key, a.known_hosts, a.connect)
    print(f"# Ansible inventory of cluster {inventory['all']['vars']['cairn_cluster']} (rendered from terraform output by render_inventory.py)")
    print(json.dumps(inventory, indent=2))


if __name__ == "__main__":
    main()
