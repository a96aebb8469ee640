"""livepatch: reboot-less Linux kernel security fixes, client and patch service."""

__version__ = "0.1.0"
