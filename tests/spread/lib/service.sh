#!/bin/bash
# A local patch service for the spread tasks: `livepatch-server serve` with
# TLS on 127.0.0.1:8443, installed from this project into a venv, plus the
# sample livepatch (tests/kernel/modules/cmdline) built for the running kernel.

SERVICE_VENV=/opt/livepatch-service
SERVICE_DATA=/var/lib/livepatch-service-test
SERVICE_URL=https://127.0.0.1:8443

service_install() {
    if [ ! -x "$SERVICE_VENV/bin/livepatch-server" ]; then
        apt-get install -y -qq python3-venv openssl make gcc "linux-headers-$(uname -r)" >/dev/null
        python3 -m venv "$SERVICE_VENV"
        "$SERVICE_VENV/bin/pip" install -q "$SPREAD_PATH[server]"
    fi
}

admin() {
    "$SERVICE_VENV/bin/livepatch-admin" "$@" --data-dir "$SERVICE_DATA"
}

service_start() {
    service_install
    mkdir -p "$SERVICE_DATA"
    if [ ! -e "$SERVICE_DATA/tls.crt" ]; then
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
            -addext subjectAltName=IP:127.0.0.1 \
            -keyout "$SERVICE_DATA/tls.key" -out "$SERVICE_DATA/tls.crt" 2>/dev/null
        admin keys init >/dev/null
    fi
    systemd-run --unit=livepatch-test-service --collect \
        "$SERVICE_VENV/bin/livepatch-server" serve --data-dir "$SERVICE_DATA" --port 8443 \
        --tls-cert "$SERVICE_DATA/tls.crt" --tls-key "$SERVICE_DATA/tls.key" --workers 1
    for _ in $(seq 60); do
        curl -sf --cacert "$SERVICE_DATA/tls.crt" "$SERVICE_URL/healthz" >/dev/null && return 0
        sleep 1
    done
    journalctl -u livepatch-test-service --no-pager | tail -n 50
    return 1
}

service_stop() {
    systemctl stop livepatch-test-service 2>/dev/null || true
    rm -rf "$SERVICE_DATA"
}

# The kernel key patches are published for (the client's read_identity().key).
kernel_key() {
    "$SERVICE_VENV/bin/python" -c 'from livepatch.kernel import read_identity; print(read_identity().key)'
}

# Build livepatch_cmdline_v1.ko for this kernel, publish it to everyone; prints the patch id.
publish_sample_patch() {
    build=$(mktemp -d)
    cp "$SPREAD_PATH"/tests/kernel/modules/cmdline/* "$build/"
    make -s -C "/lib/modules/$(uname -r)/build" M="$build" modules >/dev/null
    id=$(admin publish "$build/livepatch_cmdline_v1.ko" --kernel "$(kernel_key)" \
        --cve CVE-2024-1086 --severity high --description "sample fix" --format json |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["patch_id"])')
    admin patches promote "$id" --to all >/dev/null
    rm -rf "$build"
    echo "$id"
}

# Build livepatch_cmdline_warn.ko (tests/kernel/modules/preflight: it WARNs when
# /proc/cmdline is read), publish it to everyone without pre-flight (which would
# refuse it); prints the patch id.
publish_warn_patch() {
    build=$(mktemp -d)
    cp "$SPREAD_PATH"/tests/kernel/modules/preflight/livepatch_cmdline_warn.c "$build/"
    echo 'obj-m += livepatch_cmdline_warn.o' > "$build/Kbuild"
    make -s -C "/lib/modules/$(uname -r)/build" M="$build" modules >/dev/null
    id=$(admin publish --no-preflight "$build/livepatch_cmdline_warn.ko" --kernel "$(kernel_key)" \
        --cve CVE-2024-26581 --severity high --description "a fix that warns" --format json |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["patch_id"])')
    admin patches promote "$id" --to all >/dev/null
    rm -rf "$build"
    echo "$id"
}

new_token() {
    admin tokens create --format json | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])'
}

enrolled_machines() {
    admin tokens list --format json | python3 -c 'import json, sys; print(sum(t["machines"] for t in json.load(sys.stdin)))'
}

# Point the snap at the service: the CA goes in as PEM text, since the
# confined snap cannot read a file under /var/lib.
configure_snap_for_service() {
    snap set livepatch remote-server="$SERVICE_URL" ca-certs="$(cat "$SERVICE_DATA/tls.crt")"
}

# Take the sample patch out of the kernel again (the tests run on a throwaway VM,
# but restore leaves it as found).
unload_sample_patch() {
    unload_patch livepatch_cmdline_v1
}

unload_warn_patch() {
    unload_patch livepatch_cmdline_warn
}

# unload_patch NAME: disable livepatch NAME if loaded, wait for it to go, unload its module.
unload_patch() {
    if [ -e "/sys/kernel/livepatch/$1" ]; then
        echo 0 > "/sys/kernel/livepatch/$1/enabled"
        for _ in $(seq 30); do
            [ -e "/sys/kernel/livepatch/$1" ] || break
            sleep 1
        done
    fi
    rmmod "$1" 2>/dev/null || true
}

# The project's own snapd test machine (tests/snapd/spread.py) runs the patch
# service on its host, reached over qemu's network; these replace the functions
# above, sending the service's side to the host through the shared directory.
if [ -n "${LIVEPATCH_HOST_CALLS:-}" ]; then
    SERVICE_URL=$LIVEPATCH_HOST_SERVICE_URL

    # host_call ARG...: run ARGs on the host (tests/snapd/spread.py HostCalls); its output.
    host_call() {
        local id rc
        id="$(date +%s%N)-$$-$RANDOM"
        printf '%s\0' "$@" > "$LIVEPATCH_HOST_CALLS/$id.tmp"
        mv "$LIVEPATCH_HOST_CALLS/$id.tmp" "$LIVEPATCH_HOST_CALLS/$id.req"
        for _ in $(seq 1200); do
            [ -e "$LIVEPATCH_HOST_CALLS/$id.rc" ] && break
            sleep 0.25
        done
        cat "$LIVEPATCH_HOST_CALLS/$id.out"
        rc=$(cat "$LIVEPATCH_HOST_CALLS/$id.rc")
        rm -f "$LIVEPATCH_HOST_CALLS/$id".*
        return "$rc"
    }
    service_start() { :; }
    service_stop() { :; }
    admin() { host_call admin "$@"; }
    kernel_key() { host_call kernel-key; }
    publish_sample_patch() { host_call publish-sample; }
    publish_warn_patch() { host_call publish-warn; }
    configure_snap_for_service() {
        snap set livepatch remote-server="$SERVICE_URL" ca-certs="$(cat "$LIVEPATCH_HOST_CA")"
    }
fi
