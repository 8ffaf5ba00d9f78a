variable "cluster_name" {
  type        = string
  description = "Cluster name: the cairn:cluster tag, as the deployer sets it."
}

variable "expires" {
  type        = string
  description = "The cairn:expires tag (RFC 3339, UTC)."
}

variable "vpc_id" {
  type        = string
  description = "VPC of the group."
}

variable "allowed_cidrs" {
  type        = list(string)
  description = "Operator networks allowed to reach SSH (22), the API (9984), the websocket (9985) and Grafana (3000). Never 0.0.0.0/0 unless you mean the whole internet."

  validation {
    condition     = length(var.allowed_cidrs) > 0 && alltrue([for c in var.allowed_cidrs : can(cidrnetmask(c))])
    error_message = "allowed_cidrs needs at least one IPv4 CIDR such as 203.0.113.7/32."
  }
}
