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

# LIVEPATCH_KEEP_INSTALLED (set by tests/snapd/spread.py, where one TCG machine runs
# every task and an install with its connections takes minutes): install once,
# keep the snap between tasks; the remove task removes it last.
install_livepatch() {
    if [ -n "${LIVEPATCH_KEEP_INSTALLED:-}" ] && snap list livepatch >/dev/null 2>&1; then
        return 0
    fi
    snap install --dangerous "$(snap_file)"
    # Interfaces snapd does not connect by itself (docs/snap.md): a store
    # declaration would; for a --dangerous install, connect them by hand.
    snap connect livepatch:kernel-module-control
    snap connect livepatch:livepatch-sysfs
    snap connect livepatch:kernel-state
    snap connect livepatch:hardware-observe
    snap connect livepatch:log-observe
    snap connect livepatch:livepatch-status livepatch:livepatch-service
}

remove_livepatch() {
    [ -z "${LIVEPATCH_KEEP_INSTALLED:-}" ] || return 0
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
