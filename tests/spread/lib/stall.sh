#!/bin/bash
# A livepatch transition that stays pending (tests/kernel/modules/stall): the
# target module's worker sleeps in the function the livepatch replaces for as
# long as its `hold` parameter is Y. The .ko files are built for the running
# kernel: by the host of the project's snapd test machine ($LIVEPATCH_TEST_MODULES),
# else here with the kernel headers.

STALL_SYSFS=/sys/kernel/livepatch/livepatch_stall

stall_modules() {
    if [ -n "${LIVEPATCH_TEST_MODULES:-}" ]; then
        echo "$LIVEPATCH_TEST_MODULES"
        return
    fi
    build=/root/stall-modules
    if [ ! -e "$build/livepatch_stall.ko" ]; then
        mkdir -p "$build"
        cp "$SPREAD_PATH"/tests/kernel/modules/stall/* "$build/"
        make -s -C "/lib/modules/$(uname -r)/build" M="$build" modules >/dev/null
    fi
    echo "$build"
}

# Load the target (its worker starts holding), then the livepatch: its transition starts
# and cannot complete.
start_stalled_transition() {
    modules=$(stall_modules)
    insmod "$modules/livepatch_stall_target.ko"
    insmod "$modules/livepatch_stall.ko"
}

stall_transition() {
    cat "$STALL_SYSFS/transition" 2>/dev/null || echo none
}

# Let the worker leave the patched function; wait for the transition to complete.
release_stalled_transition() {
    echo N > /sys/module/livepatch_stall_target/parameters/hold 2>/dev/null || true
    for _ in $(seq 60); do
        [ "$(stall_transition)" = 1 ] || return 0
        sleep 1
    done
    return 1
}

# Leave the kernel as found: transition completed, patch disabled, both modules unloaded.
remove_stalled_transition() {
    release_stalled_transition || true
    if [ -e "$STALL_SYSFS" ]; then
        echo 0 > "$STALL_SYSFS/enabled"
        for _ in $(seq 60); do [ -e "$STALL_SYSFS" ] || break; sleep 1; done
    fi
    rmmod livepatch_stall 2>/dev/null || true
    rmmod livepatch_stall_target 2>/dev/null || true
}
