#!/bin/bash
# Run in the snapd test machine by tests/snapd/test_server_unit.py (PORT is replaced
# there): install the patch service's unit as an operator would, start it, and print
# what was seen as "FACT KEY=VALUE" lines; the assertions are on the host.
set -u
V=/opt/livepatch-server
DATA=/var/lib/livepatch-server
UNIT=livepatch-server.service
fact() { echo "FACT $1=$2"; }
healthz() {  # the service over HTTPS, checked against its certificate, from this machine
    python3 - "$1" <<'PY'
import ssl, sys, time, urllib.request
context = ssl.create_default_context(cafile="/etc/livepatch-server/tls.crt")
deadline = time.monotonic() + float(sys.argv[1])
while True:
    try:
        with urllib.request.urlopen("https://127.0.0.1:PORT/healthz", context=context, timeout=5) as r:
            print(r.status, r.read(200).decode(errors="replace"))
            break
    except Exception as error:
        if time.monotonic() > deadline:
            print("no answer:", error)
            sys.exit(1)
        time.sleep(1)
PY
}
set -e
tar -C /opt -xf /mnt/share/service/livepatch-server.tar
install -d -m 0700 /etc/livepatch-server
install -m 0600 /mnt/share/service/tls.crt /mnt/share/service/tls.key /etc/livepatch-server/
$V/bin/livepatch-server install-unit --port PORT \
    --tls-cert /etc/livepatch-server/tls.crt --tls-key /etc/livepatch-server/tls.key
# the next steps install-unit printed
systemd-sysusers
systemctl daemon-reload
install -d -o livepatch-server -g livepatch-server -m 0700 $DATA
setpriv --reuid=livepatch-server --regid=livepatch-server --init-groups \
    $V/bin/livepatch-admin keys init --data-dir $DATA
started=$(date +%s)
systemctl enable --now $UNIT
set +e
healthz 300 && fact serving yes || fact serving no
fact start_seconds $(( $(date +%s) - started ))
pid=$(systemctl show -p MainPID --value $UNIT)
fact user "$(ps -o user= -p "$pid")"
fact nofile "$(awk '/Max open files/ {print $4}' /proc/$pid/limits)"
fact protect_system "$(systemctl show -p ProtectSystem --value $UNIT)"
fact data_dir "$(stat -c '%U:%G:%a' $DATA)"
fact database "$(stat -c '%U:%G:%a' $DATA/livepatch.db 2>/dev/null || echo missing)"
fact not_owned "$(find $DATA ! -user livepatch-server | wc -l)"
find $DATA -printf '%u:%g %m %p\n'
echo "--- writes from inside the service's mount namespace"
nsenter -t "$pid" -m -- touch /etc/livepatch-server-write-test 2>&1 | tail -n1
fact etc_write "$(nsenter -t "$pid" -m -- sh -c 'touch /etc/lp-test 2>&1' | grep -c 'Read-only file system')"
fact opt_write "$(nsenter -t "$pid" -m -- sh -c 'touch /opt/livepatch-server/lp-test 2>&1' | grep -c 'Read-only file system')"
nsenter -t "$pid" -m -- sh -c "touch $DATA/lp-test && rm $DATA/lp-test" && fact state_write ok
test ! -e /etc/lp-test && fact etc_untouched yes
security=$(systemd-analyze security --no-pager $UNIT 2>&1)
echo "$security" | tail -n 3
fact exposure "$(echo "$security" | sed -n 's/.*Overall exposure level for livepatch-server.service: \([0-9.]*\).*/\1/p')"
echo "--- kill -9 of the main process"
kill -9 "$pid"
for _ in $(seq 120); do
    new=$(systemctl show -p MainPID --value $UNIT)
    [ "$new" != 0 ] && [ "$new" != "$pid" ] && break
    sleep 1
done
fact restarts "$(systemctl show -p NRestarts --value $UNIT)"
fact new_pid_differs "$([ "$new" != "$pid" ] && [ "$new" != 0 ] && echo yes || echo no)"
healthz 300 && fact serving_again yes || fact serving_again no
journalctl -u $UNIT --no-pager | grep -E 'Main process exited|Scheduled restart|Started' | tail -n 4
systemctl stop $UNIT
