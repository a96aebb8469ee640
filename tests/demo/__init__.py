"""Interim `make demo`: livepatch.kernel live-patching a real kernel in qemu.

The host builds a sample livepatch module and boots Debian's kernel in a VM;
the guest (``tests.demo.guest``) shows identity and capabilities, loads the
patch, shows /proc/cmdline change, lists loaded patches, disables and
unloads it. To be replaced by the full client/server demo.
"""
