"""How the running kernel is named: the key patches are published against, and
the Debian architecture name.

Standard library only and imports nothing: shared by the kernel layer
(``livepatch.kernel.identity``) and the `livepatch status` fast path.
"""

# uname machine → Debian/Ubuntu architecture name.
ARCHITECTURES = {
    "x86_64": "amd64",
    "aarch64": "arm64",
    "armv7l": "armhf",
    "i686": "i386",
    "i386": "i386",
    "ppc64le": "ppc64el",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


def architecture_name(machine: str) -> str:
    return ARCHITECTURES.get(machine, machine)


def patch_key(release: str, version_signature: str | None) -> str:
    """What patches are published against (``--kernel``).

    Ubuntu's version_signature names the exact package build
    ("Ubuntu 5.15.0-91.101-generic 5.15.131" → "5.15.0-91.101-generic"),
    which the release alone does not; elsewhere the release is the key.
    """
    if version_signature:
        fields = version_signature.split()
        if len(fields) >= 2:
            return fields[1]
    return release
