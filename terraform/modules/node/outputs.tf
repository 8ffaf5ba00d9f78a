output "host" {
  description = "The host as the inventory renderer reads it: index, role, instance id and type, private and public address."
  value = {
    index         = var.index
    role          = var.role
    instance_id   = aws_instance.host.id
    instance_type = aws_instance.host.instance_type
    private_ip    = aws_instance.host.private_ip
    public_ip     = aws_eip.public.public_ip
  }
}
