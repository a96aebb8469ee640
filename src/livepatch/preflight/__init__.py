"""Pre-flight: a livepatch module on the exact kernel it is for, in qemu, before any canary.

``kernels`` finds (or fetches and caches) the kernel image for a kernel key,
``vm`` boots it with virtme-ng and runs ``guest`` inside, which loads the
module through the client's own verification and kernel layer, waits for the
transition, exercises the kernel, judges health, then disables and unloads
it. ``result`` is the outcome, as JSON across the VM boundary and as text.
"""
