output "id" {
  description = "The security group's id."
  value       = aws_security_group.cluster.id
}
