#!/usr/bin/env bash
# Test hosts for the deployer: one network namespace per "instance", at the private address moto
# gave it, running Debian's sshd with the host key from the instance's cloud-init user-data and
# the cluster key pair's public key as root's authorized key. systemd is absent here, so each
# host sees the docker-systemctl-replacement shim as /usr/bin/systemctl and journalctl, and
# docker-shim as `docker` (in /usr/local/sbin, first on root's PATH; no daemon here: it
# validates and records compose projects).
# Each host has private /opt/cairn, /var/lib/cairn, /etc/cairn, /etc/security, /etc/systemd/system, /var/log,
# /root, /run and /tmp (bind mounts inside the namespace's mount namespace); the rest of the
# filesystem, users and the PID space are shared with this machine (see
# ../shared/reference/deployer-testing.md). Root only.
#
#   nshost.sh add IP AUTHORIZED_KEY_FILE HOST_KEY_FILE   (IP in 10.77.0.0/24)
#   nshost.sh del IP
#   nshost.sh down                                        (every host and the bridge)
#   nshost.sh sshd-stop IP                                (the host stops answering SSH)
set -euo pipefail

STATE="${CAIRN_TEST_HOSTS:-/tmp/cairn-test-hosts}"
SHIMS="${CAIRN_SYSTEMCTL_SHIM:?set CAIRN_SYSTEMCTL_SHIM to the directory holding systemctl and journalctl shims}"
BRIDGE=cairnbr0

name() { echo "cairn-h${1##*.}"; }

bridge() {
  # The kernel's ARP table is shared by all namespaces (default limit 1,024 entries): 33 hosts
  # whose engines form a full mesh need ~1,100, and beyond the limit new entries are refused
  # ("neighbor table overflow"), cutting this machine off from the hosts. Raise it.
  if [ "$(sysctl -n net.ipv4.neigh.default.gc_thresh3)" -lt 16384 ]; then
    sysctl -qw net.ipv4.neigh.default.gc_thresh1=4096 net.ipv4.neigh.default.gc_thresh2=8192 net.ipv4.neigh.default.gc_thresh3=16384
  fi
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    # A fixed address: a bridge otherwise takes the lowest MAC of its ports, which changes as
    # hosts are added and leaves the earlier hosts' ARP entries for 10.77.0.1 stale.
    ip link add "$BRIDGE" address 02:77:00:00:00:01 type bridge
    ip addr add 10.77.0.1/24 dev "$BRIDGE"
    ip link set "$BRIDGE" up
  fi
}

add() {
  local ip=$1 authkey=$2 hostkey=$3
  [[ $ip == 10.77.0.* ]] || { echo "nshost: $ip is outside 10.77.0.0/24" >&2; exit 2; }
  local n; n=$(name "$ip")
  local h="$STATE/$n"
  ip netns list | grep -qw "$n" && { echo "nshost: $n exists" >&2; return 0; }
  bridge
  mkdir -p /opt/cairn /var/lib/cairn /etc/cairn /run/sshd
  # /etc/security too (ansible/'s common role writes limits.d): `ip netns exec` mounts
  # /etc/netns/NAME/security over /etc/security inside the host.
  mkdir -p "$h"/{opt,varlib,root,tmp,units,log} /etc/netns/"$n"/ssh /etc/netns/"$n"/cairn /etc/netns/"$n"/security/limits.d
  install -m 600 "$hostkey" /etc/netns/"$n"/ssh/ssh_host_ed25519_key
  install -m 644 "$authkey" /etc/netns/"$n"/ssh/authorized_keys
  cat > /etc/netns/"$n"/ssh/sshd_config <<EOF
ListenAddress $ip
Port 22
HostKey /etc/ssh/ssh_host_ed25519_key
PidFile none
AuthorizedKeysFile /etc/ssh/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
MaxSessions 64
MaxStartups 200
Subsystem sftp internal-sftp
EOF
  ip netns add "$n"
  local v="v${n#cairn-}"
  # A veth left by a host whose namespace outlived it (zombie processes keep it alive) goes.
  ip link del "$v" 2>/dev/null || true
  ip link add "$v" type veth peer name eth0 netns "$n"
  ip link set "$v" master "$BRIDGE" up
  ip netns exec "$n" ip addr add "$ip"/24 dev eth0
  ip netns exec "$n" ip link set eth0 up
  ip netns exec "$n" ip link set lo up
  # /tmp last: it hides this machine's /tmp (where $STATE may live) inside the host.
  nohup ip netns exec "$n" unshare --uts /bin/sh -c "hostname $n &&
    mount --bind $h/opt /opt/cairn && mount --bind $h/varlib /var/lib/cairn &&
    mount --bind $h/units /etc/systemd/system && mount --bind $h/log /var/log &&
    mount --bind $h/root /root &&
    mount --bind $SHIMS/systemctl /usr/bin/systemctl && mount --bind $SHIMS/journalctl /usr/bin/journalctl &&
    mount --bind $SHIMS/path /usr/local/sbin &&
    mount -t tmpfs tmpfs /run && mkdir -p /run/sshd &&
    mount --bind $h/tmp /tmp && exec /usr/sbin/sshd -D -e" > "$STATE/$n.log" 2>&1 &
  echo $! > "$STATE/$n.pid"
}

del() {
  local n; n=$(name "$1")
  if ip netns list | grep -qw "$n"; then
    for p in $(ip netns pids "$n" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    ip netns del "$n" || true
  fi
  rm -rf /etc/netns/"$n" "${STATE:?}/$n" "$STATE/$n.pid" "$STATE/$n.log"
}

sshd_stop() {
  local n; n=$(name "$1")
  [ -f "$STATE/$n.pid" ] && kill -9 "$(cat "$STATE/$n.pid")" 2>/dev/null || true
}

down() {
  for n in $(ip netns list | awk '{print $1}' | grep '^cairn-h' || true); do del "10.77.0.${n#cairn-h}"; done
  for v in $(ip -br link | awk '{print $1}' | grep '^vh[0-9]*@' | cut -d@ -f1 || true); do ip link del "$v" 2>/dev/null || true; done
  ip link del "$BRIDGE" 2>/dev/null || true
}

mkdir -p "$STATE"
case "${1:-}" in
  add) add "$2" "$3" "$4" ;;
  del) del "$2" ;;
  down) down ;;
  sshd-stop) sshd_stop "$2" ;;
  *) echo "usage: nshost.sh add IP AUTHKEY HOSTKEY | del IP | down | sshd-stop IP" >&2; exit 2 ;;
esac
