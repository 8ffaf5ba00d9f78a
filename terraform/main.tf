# A Cairn cluster: its own VPC and public subnet, one least-privilege security group, a key
# pair, `nodes` node hosts and an optional monitor host, tagged as `deployer up` tags them.
# Terraform provisions; ansible/ configures (keys on each node, keyrings, engine, units).

provider "aws" {
  region = var.region
}

locals {
  # Fixed at the first apply (plantimestamp would move it on every plan).
  expires = timeadd(time_static.created.rfc3339, "${var.ttl_hours}h")
  tags = {
    "cairn:cluster" = var.cluster_name
    "cairn:expires" = local.expires
  }
  ami_id = var.ami_id != null ? var.ami_id : data.aws_ami.ubuntu[0].id
}

resource "time_static" "created" {}

data "aws_ami" "ubuntu" {
  count       = var.ami_id == null ? 1 : 0
  most_recent = true
  owners      = ["099720109477"] # Canonical

  filter {
    name   = "name"
    values = ["ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"]
  }
}

resource "aws_vpc" "cluster" {
  #checkov:skip=CKV2_AWS_11:Short-lived test clusters; flow logs need a log group and an IAM role per cluster (README: Security scan)
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true
  tags                 = merge(local.tags, { "Name" = "${var.cluster_name}-vpc" })
}

# The VPC's default group allows nothing: every host uses the cluster's own group.
resource "aws_default_security_group" "closed" {
  vpc_id = aws_vpc.cluster.id
  tags   = merge(local.tags, { "Name" = "${var.cluster_name}-default-closed" })
}

resource "aws_subnet" "public" {
  vpc_id                  = aws_vpc.cluster.id
  cidr_block              = cidrsubnet(var.vpc_cidr, 8, 0)
  availability_zone       = var.availability_zone
  map_public_ip_on_launch = false
  tags                    = merge(local.tags, { "Name" = "${var.cluster_name}-subnet" })
}

resource "aws_internet_gateway" "gw" {
  vpc_id = aws_vpc.cluster.id
  tags   = merge(local.tags, { "Name" = "${var.cluster_name}-igw" })
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.cluster.id
  tags   = merge(local.tags, { "Name" = "${var.cluster_name}-rt" })

  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.gw.id
  }
}

resource "aws_route_table_association" "public" {
  subnet_id      = aws_subnet.public.id
  route_table_id = aws_route_table.public.id
}

resource "aws_key_pair" "operator" {
  key_name   = "${var.cluster_name}-cairn"
  public_key = var.ssh_public_key
  tags       = merge(local.tags, { "Name" = "${var.cluster_name}-key" })
}

module "security_group" {
  source        = "./modules/security-group"
  cluster_name  = var.cluster_name
  expires       = local.expires
  vpc_id        = aws_vpc.cluster.id
  allowed_cidrs = var.allowed_cidrs
}

module "node" {
  source            = "./modules/node"
  count             = var.nodes
  cluster_name      = var.cluster_name
  role              = "node"
  index             = count.index
  expires           = local.expires
  ami_id            = local.ami_id
  instance_type     = var.instance_type
  subnet_id         = aws_subnet.public.id
  security_group_id = module.security_group.id
  key_name          = aws_key_pair.operator.key_name
  data_volume_gb    = var.data_volume_gb
}

module "monitor" {
  source            = "./modules/node"
  count             = var.monitor ? 1 : 0
  cluster_name      = var.cluster_name
  role              = "monitor"
  index             = 0
  expires           = local.expires
  ami_id            = local.ami_id
  instance_type     = var.monitor_instance_type
  subnet_id         = aws_subnet.public.id
  security_group_id = module.security_group.id
  key_name          = aws_key_pair.operator.key_name
  data_volume_gb    = 20
}
