# One Cairn host: the instance (IMDSv2 only, encrypted root), an encrypted gp3 data volume, an
# Elastic IP, all tagged as the deployer tags its hosts so `deployer list/reap` and the
# inventory renderer see them.

locals {
  name = "${var.cluster_name}-${var.role}-${var.index}"
  tags = {
    "Name"          = local.name
    "cairn:cluster" = var.cluster_name
    "cairn:expires" = var.expires
    "cairn:role"    = var.role
    "cairn:index"   = tostring(var.index)
  }
}

module "security_group" {
  source        = "../security-group"
  count         = var.security_group_id == null ? 1 : 0
  cluster_name  = var.cluster_name
  expires       = var.expires
  vpc_id        = var.vpc_id
  allowed_cidrs = var.allowed_cidrs
}

locals {
  security_group_id = var.security_group_id != null ? var.security_group_id : module.security_group[0].id
}

resource "aws_instance" "host" {
  #checkov:skip=CKV2_AWS_41:The hosts call no AWS API; no instance role is the least privilege
  ami                         = var.ami_id
  instance_type               = var.instance_type
  subnet_id                   = var.subnet_id
  vpc_security_group_ids      = [local.security_group_id]
  key_name                    = var.key_name
  user_data                   = var.user_data
  monitoring                  = true
  ebs_optimized               = true
  associate_public_ip_address = false

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = var.root_volume_gb
    encrypted             = true
    kms_key_id            = var.kms_key_id
    delete_on_termination = true
    tags                  = local.tags
  }

  tags = local.tags
}

resource "aws_ebs_volume" "data" {
  count             = var.data_volume_gb > 0 ? 1 : 0
  availability_zone = aws_instance.host.availability_zone
  type              = "gp3"
  size              = var.data_volume_gb
  iops              = var.data_volume_iops
  encrypted         = true
  kms_key_id        = var.kms_key_id
  tags              = merge(local.tags, { "Name" = "${local.name}-data" })
}

resource "aws_volume_attachment" "data" {
  count       = var.data_volume_gb > 0 ? 1 : 0
  device_name = "/dev/sdf"
  volume_id   = aws_ebs_volume.data[0].id
  instance_id = aws_instance.host.id
}

resource "aws_eip" "public" {
  domain   = "vpc"
  instance = aws_instance.host.id
  tags     = merge(local.tags, { "Name" = "${local.name}-eip" })
}
