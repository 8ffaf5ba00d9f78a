#!/usr/bin/env python3
"""The "hypervisor and cloud-init" of the deployer's end-to-end test: turns every running moto
instance of a cluster into a network-namespace host (nshost.sh) at the private address moto
assigned, with sshd using the host key from the instance's own #cloud-config user-data (the
path cloud-init takes on EC2) and the instance key pair's public key as the authorized key.
Terminated instances lose their host. On SIGTERM every host it made is removed.

Usage: fakecloud.py ENDPOINT CLUSTER   (moto's URL; AWS_* dummy credentials in the environment)
"""
import base64
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

import boto3
import yaml

HERE = pathlib.Path(__file__).resolve().parent
NSHOST = str(HERE / "nshost.sh")


def main(endpoint, cluster):
    ec2 = boto3.client("ec2", endpoint_url=endpoint, region_name=os.environ.get("AWS_REGION", "us-east-1"))
    hosts = {}  # instance id -> ip
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    work = tempfile.mkdtemp(prefix="fakecloud-")
    while not stop:
        seen = set()
        try:
            pages = ec2.get_paginator("describe_instances").paginate(Filters=[{"Name": "tag:cairn:cluster", "Values": [cluster]}])
            instances = [i for p in pages for r in p["Reservations"] for i in r["Instances"]]
        except Exception as e:  # moto restarting between tests: try again
            print(f"fakecloud: {e}", flush=True)
            time.sleep(0.5)
            continue
        for i in instances:
            iid, state, ip = i["InstanceId"], i["State"]["Name"], i.get("PrivateIpAddress", "")
            if state in ("pending", "running") and ip.startswith("10.77.0."):
                seen.add(iid)
                if iid in hosts:
                    continue
                ud = ec2.describe_instance_attribute(InstanceId=iid, Attribute="userData")["UserData"].get("Value", "")
                cloud = yaml.safe_load(base64.b64decode(ud)) if ud else {}
                hostkey = (cloud or {}).get("ssh_keys", {}).get("ed25519_private")
                if not hostkey:
                    print(f"fakecloud: {iid} has no ssh_keys.ed25519_private in its user-data: no host", flush=True)
                    hosts[iid] = None
                    continue
                pub = ec2.describe_key_pairs(KeyNames=[i["KeyName"]], IncludePublicKey=True)["KeyPairs"][0]["PublicKey"]
                hk, ak = pathlib.Path(work, iid + ".hostkey"), pathlib.Path(work, iid + ".pub")
                hk.write_text(hostkey)
                hk.chmod(0o600)
                ak.write_text(pub.strip() + "\n")
                t = time.time()
                r = subprocess.run([NSHOST, "add", ip, str(ak), str(hk)])
                if r.returncode != 0:
                    print(f"fakecloud: could not make the host for {iid} {ip} (exit {r.returncode}); retrying", flush=True)
                    subprocess.run([NSHOST, "del", ip])
                    continue
                hosts[iid] = ip
                print(f"fakecloud: host up {iid} {ip} in {time.time() - t:.2f}s", flush=True)
        for iid in [k for k in hosts if k not in seen]:
            if hosts[iid]:
                subprocess.run([NSHOST, "del", hosts[iid]], check=False)
                print(f"fakecloud: host down {iid} {hosts[iid]}", flush=True)
            del hosts[iid]
        time.sleep(0.3)
    for iid, ip in hosts.items():
        if ip:
            subprocess.run([NSHOST, "del", ip], check=False)
    print("fakecloud: stopped, hosts removed", flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(*sys.argv[1:])
