variable "cluster_name" {
  type        = string
  description = "Cluster name: the cairn:cluster tag on every resource, as the deployer sets it."

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{0,30}$", var.cluster_name))
    error_message = "cluster_name: 1-31 lower-case letters, digits and '-', starting with a letter or digit."
  }
}

variable "role" {
  type        = string
  description = "What the host runs: node (a Cairn node and its nats-server) or monitor (the monitor/ stack)."
  default     = "node"

  validation {
    condition     = contains(["node", "monitor"], var.role)
    error_message = "role must be node or monitor."
  }
}

variable "index" {
  type        = number
  description = "Index of the host within its role (the cairn:index tag; node 0 is the first member)."
  default     = 0

  validation {
    condition     = var.index >= 0 && floor(var.index) == var.index
    error_message = "index is a whole number from 0."
  }
}

variable "expires" {
  type        = string
  description = "When the host may be reaped (RFC 3339, UTC), the cairn:expires tag `deployer reap` reads."

  validation {
    condition     = can(formatdate("YYYY", var.expires))
    error_message = "expires must be an RFC 3339 timestamp such as 2026-12-01T00:00:00Z."
  }
}

variable "ami_id" {
  type        = string
  description = "AMI of the host: an Ubuntu LTS image (the roles in ansible/ are written for it)."

  validation {
    condition     = can(regex("^ami-[0-9a-f]{8,17}$", var.ami_id))
    error_message = "ami_id must look like ami-0123456789abcdef0."
  }
}

variable "instance_type" {
  type        = string
  description = "EC2 instance type (c6i.xlarge is the deployer's default for nodes)."
  default     = "c6i.xlarge"
}

variable "subnet_id" {
  type        = string
  description = "Subnet the host is placed in."
}

variable "security_group_id" {
  type        = string
  description = "The cluster's security group (the root module's). null: this module creates one with the same rules (a one-machine node), which needs vpc_id and allowed_cidrs."
  default     = null
}

variable "vpc_id" {
  type        = string
  description = "VPC of the host's own security group (only when security_group_id is null)."
  default     = null
}

variable "allowed_cidrs" {
  type        = list(string)
  description = "Operator networks for the host's own security group (only when security_group_id is null): SSH, API, websocket and Grafana are reachable from them alone."
  default     = []
}

variable "key_name" {
  type        = string
  description = "Name of the EC2 key pair whose public key is installed for the login user."
}

variable "root_volume_gb" {
  type        = number
  description = "Size of the encrypted gp3 root volume, GiB."
  default     = 20

  validation {
    condition     = var.root_volume_gb >= 8 && var.root_volume_gb <= 1024
    error_message = "root_volume_gb must be between 8 and 1024."
  }
}

variable "data_volume_gb" {
  type        = number
  description = "Size of the encrypted gp3 data volume (Cairn's database and the engine's store), GiB; 0 for none."
  default     = 50

  validation {
    condition     = var.data_volume_gb == 0 || (var.data_volume_gb >= 1 && var.data_volume_gb <= 16384)
    error_message = "data_volume_gb must be 0 (none) or between 1 and 16384."
  }
}

variable "data_volume_iops" {
  type        = number
  description = "Provisioned IOPS of the gp3 data volume (3000 is gp3's baseline at no extra cost)."
  default     = 3000

  validation {
    condition     = var.data_volume_iops >= 3000 && var.data_volume_iops <= 16000
    error_message = "data_volume_iops must be between 3000 and 16000 (gp3)."
  }
}

variable "kms_key_id" {
  type        = string
  description = "KMS key for the volumes (null: the account's default EBS key). Volumes are always encrypted."
  default     = null
}

variable "user_data" {
  type        = string
  description = "cloud-init user-data (null: none). Never put private keys here: Cairn's keys are generated on the host."
  default     = null
}
