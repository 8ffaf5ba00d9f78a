# The cluster's security group, least privilege and the same rules as the deployer's
# (deployer/src/aws.rs ingress_rules): SSH, API, websocket and Grafana only from the operator's
# networks; SSH, API, NATS client and route ports and StatsD only between members of the group.

locals {
  tags = {
    "Name"          = "${var.cluster_name}-sg"
    "cairn:cluster" = var.cluster_name
    "cairn:expires" = var.expires
  }
  operator_ports = { ssh = 22, api = 9984, websocket = 9985, grafana = 3000 }
  operator_rules = merge([
    for name, port in local.operator_ports : {
      for cidr in var.allowed_cidrs : "${name}-${cidr}" => { port = port, cidr = cidr, what = name }
    }
  ]...)
  group_rules = {
    ssh        = { protocol = "tcp", from = 22, to = 22 }
    api-ws     = { protocol = "tcp", from = 9984, to = 9985 }
    nats       = { protocol = "tcp", from = 4222, to = 4222 }
    nats-route = { protocol = "tcp", from = 6222, to = 6222 }
    statsd     = { protocol = "udp", from = 8125, to = 8125 }
  }
}

resource "aws_security_group" "cluster" {
  #checkov:skip=CKV2_AWS_5:Attached by the caller (modules/node's instances); checkov cannot follow the module output
  name        = "${var.cluster_name}-cairn"
  description = "Cairn cluster ${var.cluster_name}: operator access from allowed_cidrs, engine traffic within the group"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "operator" {
  for_each          = local.operator_rules
  security_group_id = aws_security_group.cluster.id
  description       = "operator: ${each.value.what}"
  ip_protocol       = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port
  cidr_ipv4         = each.value.cidr
  tags              = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "within" {
  #checkov:skip=CKV_AWS_24:Source is the group itself (referenced_security_group_id), never 0.0.0.0/0
  for_each                     = local.group_rules
  security_group_id            = aws_security_group.cluster.id
  description                  = "cluster: ${each.key}"
  ip_protocol                  = each.value.protocol
  from_port                    = each.value.from
  to_port                      = each.value.to
  referenced_security_group_id = aws_security_group.cluster.id
  tags                         = local.tags
}

# Hosts fetch packages (apt, the monitor's container images) and answer clients: all egress.
resource "aws_vpc_security_group_egress_rule" "all" {
  security_group_id = aws_security_group.cluster.id
  description       = "outbound: package mirrors, container registries, NTP"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
  tags              = local.tags
}
