variable "cluster_name" {
  type        = string
  description = "Cluster name: the cairn:cluster tag on every resource (the deployer's --name)."
  default     = "cairn"

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{0,30}$", var.cluster_name))
    error_message = "cluster_name: 1-31 lower-case letters, digits and '-', starting with a letter or digit."
  }
}

variable "region" {
  type        = string
  description = "AWS region of the cluster."
  default     = "us-east-1"
}

variable "nodes" {
  type        = number
  description = "Number of Cairn nodes (each runs a node and a nats-server)."
  default     = 4

  validation {
    condition     = var.nodes >= 1 && var.nodes <= 64 && floor(var.nodes) == var.nodes
    error_message = "nodes must be a whole number from 1 to 64."
  }
}

variable "monitor" {
  type        = bool
  description = "Whether to add a monitor host (the monitor/ stack: Telegraf, InfluxDB, Grafana)."
  default     = true
}

variable "allowed_cidrs" {
  type        = list(string)
  description = "Operator networks allowed to reach SSH, the API, the websocket and Grafana (e.g. [\"203.0.113.7/32\"]). Nothing else reaches the hosts from outside."

  validation {
    condition     = length(var.allowed_cidrs) > 0 && alltrue([for c in var.allowed_cidrs : can(cidrnetmask(c))])
    error_message = "allowed_cidrs needs at least one IPv4 CIDR such as 203.0.113.7/32 (your address: curl -s https://checkip.amazonaws.com)."
  }
}

variable "ssh_public_key" {
  type        = string
  description = "OpenSSH public key installed for the login user (its private half stays with you)."

  validation {
    condition     = can(regex("^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp256) [A-Za-z0-9+/=]+", var.ssh_public_key))
    error_message = "ssh_public_key must be an OpenSSH public key line (ssh-ed25519 AAAA...)."
  }
}

variable "instance_type" {
  type        = string
  description = "Instance type of the nodes."
  default     = "c6i.xlarge"
}

variable "monitor_instance_type" {
  type        = string
  description = "Instance type of the monitor host."
  default     = "t3.large"
}

variable "ami_id" {
  type        = string
  description = "AMI of every host (null: the latest Canonical Ubuntu 24.04 LTS for amd64 in the region)."
  default     = null
}

variable "data_volume_gb" {
  type        = number
  description = "Encrypted gp3 data volume per node, GiB."
  default     = 50

  validation {
    condition     = var.data_volume_gb >= 1 && var.data_volume_gb <= 16384
    error_message = "data_volume_gb must be between 1 and 16384."
  }
}

variable "availability_zone" {
  type        = string
  description = "Availability zone of the cluster's subnet (null: AWS chooses one). Every host shares it, as the deployer places them."
  default     = null
}

variable "vpc_cidr" {
  type        = string
  description = "CIDR of the cluster's own VPC."
  default     = "10.77.0.0/16"

  validation {
    condition     = can(cidrnetmask(var.vpc_cidr))
    error_message = "vpc_cidr must be an IPv4 CIDR such as 10.77.0.0/16."
  }
}

variable "ttl_hours" {
  type        = number
  description = "Hours until the cairn:expires tag says the cluster may be reaped (`deployer reap` removes expired clusters)."
  default     = 8

  validation {
    condition     = var.ttl_hours >= 1 && var.ttl_hours <= 720
    error_message = "ttl_hours must be between 1 and 720."
  }
}
