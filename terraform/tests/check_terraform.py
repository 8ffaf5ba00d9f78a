#!/usr/bin/env python3
"""Static checks of terraform/ that need no provider download (this machine cannot fetch them).

Parses every .tf file with python-hcl2 and checks:
  - every variable has a type and a description; every output a description;
  - every output of the root module is read by render_inventory.py, and the renderer turns a
    sample of `terraform output -json` into the deployer's inventory shape;
  - every taggable resource carries the deployer's tags (cairn:cluster, cairn:expires, and on
    hosts cairn:role and cairn:index) through a locals map that defines them;
  - no ingress rule opens a literal CIDR (0.0.0.0/0 or any other): operator ingress comes from
    var.allowed_cidrs only, everything else is group-to-group;
  - instances require IMDSv2, and every volume is encrypted;
  - provider and Terraform versions are pinned exactly / bounded.
Exit status 1 with one line per problem.
"""

import json
import pathlib
import subprocess
import sys
import tempfile

import hcl2

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Resources that take no tags.
UNTAGGABLE = {"aws_route_table_association", "aws_volume_attachment", "time_static"}
HOST_TAGS = {"cairn:cluster", "cairn:expires", "cairn:role", "cairn:index"}
CLUSTER_TAGS = {"cairn:cluster", "cairn:expires"}

problems = []


def problem(msg):
    problems.append(msg)


def norm(x):
    """python-hcl2 wraps every attribute value in a one-element list: unwrap them."""
    if isinstance(x, dict):
        return {k: norm(v[0] if isinstance(v, list) and len(v) == 1 and k not in ("resource", "variable", "output", "locals", "module", "terraform", "required_providers") else v)
                for k, v in x.items() if not k.startswith("__")}
    if isinstance(x, list):
        return [norm(i) for i in x]
    return x


def load(path):
    with open(path) as f:
        try:
            return norm(hcl2.load(f))
        except Exception as e:  # the parser's own error says where
            problem(f"{path.relative_to(ROOT)}: does not parse as HCL: {e}")
            return {}


def blocks(doc, kind):
    """(name, body) of each `kind` block (variable, output, locals, module)."""
    for item in doc.get(kind, []):
        for name, body in item.items():
            yield name, body


def text(v):
    return json.dumps(v)


modules = {}
for tf in sorted(ROOT.rglob("*.tf")):
    if ".terraform" in tf.parts:
        continue
    modules.setdefault(tf.parent, []).append((tf, load(tf)))

for directory, files in modules.items():
    rel = directory.relative_to(ROOT) or pathlib.Path(".")
    locals_map = {}
    for tf, doc in files:
        for item in doc.get("locals", []):
            locals_map.update(item)
    local_tags = text(locals_map.get("tags", {}))
    for tf, doc in files:
        name = tf.relative_to(ROOT)
        for var, body in blocks(doc, "variable"):
            for field in ("type", "description"):
                if field not in body:
                    problem(f"{name}: variable {var} has no {field}")
        for out, body in blocks(doc, "output"):
            if "description" not in body:
                problem(f"{name}: output {out} has no description")
        for item in doc.get("terraform", []):
            if "required_version" not in item:
                problem(f"{name}: terraform block without required_version")
            for providers in item.get("required_providers", []):
                for prov, spec in providers.items():
                    if not str(spec.get("version", "")).startswith("= "):
                        problem(f"{name}: provider {prov} is not pinned to one version (version = \"= X.Y.Z\")")
        for item in doc.get("resource", []):
            for rtype, instances in item.items():
                for rname, body in instances.items():
                    where = f"{name}: {rtype}.{rname}"
                    if rtype not in UNTAGGABLE and not rtype.startswith("aws_default_"):
                        tags = text(body.get("tags", ""))
                        if "local.tags" not in tags:
                            problem(f"{where} does not carry local.tags (the cairn:* tags)")
                    if rtype == "aws_default_security_group":
                        if "local.tags" not in text(body.get("tags", "")):
                            problem(f"{where} does not carry local.tags")
                        if body.get("ingress") or body.get("egress"):
                            problem(f"{where} must keep the default group closed (no rules)")
                    if rtype in ("aws_vpc_security_group_ingress_rule", "aws_security_group_rule", "aws_security_group"):
                        cidr = text(body.get("cidr_ipv4", "")) + text(body.get("cidr_blocks", "")) + text(body.get("ingress", ""))
                        if "/" in cidr and "each.value.cidr" not in cidr:
                            problem(f"{where} opens a literal CIDR {cidr}: ingress from outside comes from var.allowed_cidrs only")
                    if rtype == "aws_instance":
                        md = text(body.get("metadata_options", ""))
                        if '"http_tokens": "required"' not in md:
                            problem(f"{where} does not require IMDSv2 (metadata_options.http_tokens = \"required\")")
                        if '"encrypted": true' not in text(body.get("root_block_device", "")):
                            problem(f"{where}: root volume not encrypted")
                    if rtype == "aws_ebs_volume" and body.get("encrypted") is not True:
                        problem(f"{where}: volume not encrypted")
    # The tags the locals map must define.
    has_hosts = any(rtype == "aws_instance" for _, doc in files for item in doc.get("resource", []) for rtype in item)
    want = HOST_TAGS if has_hosts else CLUSTER_TAGS
    uses_tags = any("local.tags" in text(item) for _, doc in files for item in doc.get("resource", []))
    if uses_tags:
        missing = [t for t in sorted(want) if t not in local_tags]
        if missing:
            problem(f"{rel}: locals.tags lacks {', '.join(missing)}")

# Every root output is read by the renderer, and the renderer works on a sample.
root_outputs = [o for tf, doc in modules[ROOT] for o, _ in blocks(doc, "output")]
renderer = (ROOT / "render_inventory.py").read_text()
for o in root_outputs:
    if f'value(outputs, "{o}")' not in renderer:
        problem(f"output {o} is not used by render_inventory.py")
sample = {
    "cluster_name": {"value": "lab", "type": "string", "sensitive": False},
    "region": {"value": "us-east-1", "type": "string", "sensitive": False},
    "ssh_user": {"value": "ubuntu", "type": "string", "sensitive": False},
    "nodes": {"value": [{"index": i, "role": "node", "instance_id": f"i-{i:017x}", "instance_type": "c6i.xlarge",
                         "private_ip": f"10.77.0.{i + 4}", "public_ip": f"203.0.113.{i + 4}"} for i in range(3)], "type": "list", "sensitive": False},
    "monitor": {"value": {"index": 0, "role": "monitor", "instance_id": "i-0000000000000000m", "instance_type": "t3.large",
                          "private_ip": "10.77.0.10", "public_ip": "203.0.113.10"}, "type": "object", "sensitive": False},
}
with tempfile.TemporaryDirectory() as d:
    p = pathlib.Path(d) / "outputs.json"
    p.write_text(json.dumps(sample))
    r = subprocess.run([sys.executable, str(ROOT / "render_inventory.py"), str(p), "--key", "k", "--known-hosts", "kh"], capture_output=True, text=True)
    if r.returncode != 0:
        problem(f"render_inventory.py failed on a sample: {r.stderr.strip()}")
    else:
        inv = json.loads(r.stdout.split("\n", 1)[1])
        nodes = inv["all"]["children"]["cairn_nodes"]["hosts"]
        if sorted(nodes) != ["node0", "node1", "node2"] or nodes["node2"]["cairn_private_ip"] != "10.77.0.6":
            problem(f"render_inventory.py: unexpected cairn_nodes {nodes}")
        if list(inv["all"]["children"]["cairn_monitor"]["hosts"]) != ["monitor0"]:
            problem("render_inventory.py: the monitor host is missing")
        if "StrictHostKeyChecking=yes" not in inv["all"]["vars"]["ansible_ssh_common_args"]:
            problem("render_inventory.py: host keys are not checked")

for p in problems:
    print(p)
print(f"terraform/: {sum(len(f) for f in modules.values())} files in {len(modules)} modules checked, {len(problems)} problems")
sys.exit(1 if problems else 0)
