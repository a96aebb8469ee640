"""Trust: module signatures in kernel format, keys and their lifecycle, TUF metadata.

Submodules are imported on demand (``livepatch.trust.modsig`` and so on) so
that command-line tools load only what they use.
"""
