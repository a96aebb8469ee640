#!/bin/bash
# The livepatch test agent, run by systemd in the snapd test machine
# (/usr/local/sbin/livepatch-test-agent). It mounts the host's share (virtio-9p,
# tag "share") on /mnt/share, sets the address qemu's user network expects
# (10.0.2.15, the host at 10.0.2.2), says it is ready in out/ready, then runs each
# new cmd/NAME.sh once as root: output in out/NAME.log, exit status in out/NAME.rc
# (written last). cmd/POWEROFF powers the machine off. Host side: tests/snapd/machine.py.
modprobe 9pnet_virtio; modprobe 9p
mkdir -p /mnt/share
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=none share /mnt/share
nic=$(ls /sys/class/net | grep -v '^lo$' | head -n1)
if [ -n "$nic" ]; then
  ip link set "$nic" up
  ip addr add 10.0.2.15/24 dev "$nic" 2>/dev/null
  ip route add default via 10.0.2.2 2>/dev/null
  echo "nameserver 10.0.2.3" > /etc/resolv.conf
fi
mkdir -p /mnt/share/out /mnt/share/cmd
cut -d' ' -f1 /proc/uptime > /mnt/share/out/ready.tmp
mv /mnt/share/out/ready.tmp /mnt/share/out/ready
while true; do
  for f in /mnt/share/cmd/*.sh; do
    [ -e "$f" ] || continue
    n=$(basename "$f" .sh)
    [ -e "/mnt/share/out/$n.started" ] && continue
    : > "/mnt/share/out/$n.started"
    (cd /root && bash "$f" > "/mnt/share/out/$n.log" 2>&1; echo $? > "/mnt/share/out/$n.rc.tmp")
    mv "/mnt/share/out/$n.rc.tmp" "/mnt/share/out/$n.rc"
  done
  if [ -e /mnt/share/cmd/POWEROFF ]; then
    rm -f /mnt/share/cmd/POWEROFF; sync; systemctl poweroff; exit 0
  fi
  sleep 0.5
done
