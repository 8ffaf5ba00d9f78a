#!/usr/bin/env python3
"""Independent view of what exists in an EC2 endpoint (boto3, not the deployer's code).

Usage: ec2_inventory.py ENDPOINT_URL REGION [CLUSTER]
Prints JSON: every resource tagged cairn:cluster (=CLUSTER when given), by kind, with the
details the deployer's tests assert on. Terminated instances are left out.
"""
import base64
import json
import sys

import boto3
import botocore

endpoint, region = sys.argv[1], sys.argv[2]
cluster = sys.argv[3] if len(sys.argv) > 3 else None
ec2 = boto3.client("ec2", endpoint_url=endpoint, region_name=region,
                   aws_access_key_id="testing", aws_secret_access_key="testing")
flt = [{"Name": "tag:cairn:cluster", "Values": [cluster]}] if cluster else [{"Name": "tag-key", "Values": ["cairn:cluster"]}]


def tags(x):
    return {t["Key"]: t["Value"] for t in x.get("Tags", [])}


out = {"instances": [], "vpcs": [], "subnets": [], "internet_gateways": [], "route_tables": [],
       "security_groups": [], "key_pairs": [], "volumes": [], "addresses": [], "placement_groups": []}
for page in ec2.get_paginator("describe_instances").paginate(Filters=flt):
    for r in page["Reservations"]:
        for i in r["Instances"]:
            if i["State"]["Name"] == "terminated":
                continue
            ud = ec2.describe_instance_attribute(InstanceId=i["InstanceId"], Attribute="userData")
            text = base64.b64decode(ud.get("UserData", {}).get("Value", "")).decode()
            host_key = next((l.split(":", 1)[1].strip() for l in text.splitlines() if l.strip().startswith("ed25519_public:")), None)
            out["instances"].append({
                "id": i["InstanceId"], "state": i["State"]["Name"], "type": i["InstanceType"],
                "private_ip": i.get("PrivateIpAddress"), "public_ip": i.get("PublicIpAddress"),
                "subnet": i.get("SubnetId"), "vpc": i.get("VpcId"), "key_name": i.get("KeyName"),
                "image": i.get("ImageId"),
                "security_groups": sorted({g["GroupId"] for g in i.get("SecurityGroups", [])}
                                          | {g["GroupId"] for n in i.get("NetworkInterfaces", []) for g in n.get("Groups", [])}),
                "http_tokens": i.get("MetadataOptions", {}).get("HttpTokens"),
                "tags": tags(i), "host_key": host_key, "user_data_has_private_key": "OPENSSH PRIVATE KEY" in text,
            })
for v in ec2.describe_vpcs(Filters=flt)["Vpcs"]:
    out["vpcs"].append({"id": v["VpcId"], "cidr": v["CidrBlock"], "tags": tags(v)})
for s in ec2.describe_subnets(Filters=flt)["Subnets"]:
    out["subnets"].append({"id": s["SubnetId"], "vpc": s["VpcId"], "cidr": s["CidrBlock"], "tags": tags(s)})
for g in ec2.describe_internet_gateways(Filters=flt)["InternetGateways"]:
    out["internet_gateways"].append({"id": g["InternetGatewayId"], "attached_to": [a["VpcId"] for a in g.get("Attachments", [])], "tags": tags(g)})
for r in ec2.describe_route_tables(Filters=flt)["RouteTables"]:
    out["route_tables"].append({
        "id": r["RouteTableId"], "vpc": r["VpcId"],
        "routes": [{"dest": x.get("DestinationCidrBlock"), "gateway": x.get("GatewayId")} for x in r["Routes"]],
        "subnets": [a.get("SubnetId") for a in r.get("Associations", []) if a.get("SubnetId")], "tags": tags(r)})
for g in ec2.describe_security_groups(Filters=flt)["SecurityGroups"]:
    rules = []
    for p in g["IpPermissions"]:
        base = {"proto": p["IpProtocol"], "from": p.get("FromPort"), "to": p.get("ToPort")}
        for rng in p.get("IpRanges", []):
            rules.append(dict(base, source=rng["CidrIp"]))
        for pair in p.get("UserIdGroupPairs", []):
            rules.append(dict(base, source="group:" + pair["GroupId"]))
        for rng in p.get("Ipv6Ranges", []):
            rules.append(dict(base, source=rng["CidrIpv6"]))
    out["security_groups"].append({"id": g["GroupId"], "vpc": g.get("VpcId"), "ingress": rules, "tags": tags(g)})
for k in ec2.describe_key_pairs(Filters=flt)["KeyPairs"]:
    out["key_pairs"].append({"name": k["KeyName"], "tags": tags(k)})
for v in ec2.describe_volumes(Filters=flt)["Volumes"]:
    out["volumes"].append({"id": v["VolumeId"], "state": v["State"], "tags": tags(v)})
for a in ec2.describe_addresses(Filters=flt)["Addresses"]:
    out["addresses"].append({"id": a.get("AllocationId")})
try:
    for g in ec2.describe_placement_groups(Filters=flt)["PlacementGroups"]:
        out["placement_groups"].append({"name": g["GroupName"], "strategy": g.get("Strategy")})
except botocore.exceptions.ClientError:
    raise
except Exception:  # moto 5.2.5 does not implement DescribePlacementGroups (HTTP 500)
    del out["placement_groups"]
print(json.dumps(out))
