output "cluster_name" {
  description = "The cluster's name (the inventory's cairn_cluster)."
  value       = var.cluster_name
}

output "region" {
  description = "The cluster's region (the inventory's cairn_region)."
  value       = var.region
}

output "ssh_user" {
  description = "Login user of the hosts (Ubuntu images: ubuntu)."
  value       = "ubuntu"
}

output "nodes" {
  description = "Node hosts in index order: index, role, instance id and type, private and public address."
  value       = [for n in module.node : n.host]
}

output "monitor" {
  description = "The monitor host, or null."
  value       = var.monitor ? module.monitor[0].host : null
}
