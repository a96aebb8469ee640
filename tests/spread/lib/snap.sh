#!/bin/bash
# Helpers for the spread tasks: the snap under test and its interfaces.
# Sourced by tasks; $SPREAD_PATH is the project copy on the test machine.

# The .snap to test: $LIVEPATCH_SNAP, else the one `snapcraft pack` left in the project.
snap_file() {
    if [ -n "${LIVEPATCH_SNAP:-}" ]; then
        echo "$LIVEPATCH_SNAP"
        return
    fi
    ls "$SPREAD_PATH"/livepatch_*.snap | head -n1
}

install_livepatch() {
    snap install --dangerous "$(snap_file)"
    # Interfaces snapd does not connect by itself (docs/snap.md): a store
    # declaration would; for a --dangerous install, connect them by hand.
    snap connect livepatch:kernel-module-control
    snap connect livepatch:livepatch-sysfs
    snap connect livepatch:kernel-state
    snap connect livepatch:hardware-observe
    snap connect livepatch:livepatch-status livepatch:livepatch-service
}

remove_livepatch() {
    snap remove --purge livepatch || true
}

# The revision snapd has current, e.g. x1.
current_revision() {
    snap list livepatch | awk 'NR == 2 { print $3 }'
}

# The snap's health as snapd reports it: "okay", "blocked", ... (REST API).
health_field() {
    python3 - "$1" <<'PY'
import http.client, json, socket, sys
class Unix(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect("/run/snapd.socket")
connection = Unix("localhost")
connection.request("GET", "/v2/snaps/livepatch")
health = json.load(connection.getresponse())["result"].get("health") or {}
print(health.get(sys.argv[1], ""))
PY
}

# Wait until the daemon answers `livepatch status` (it starts with the snap).
wait_for_daemon() {
    for _ in $(seq 60); do
        if livepatch status --format json 2>/dev/null | grep -q '"Daemon-Running": true'; then
            return 0
        fi
        sleep 1
    done
    livepatch status --format json || true
    return 1
}
