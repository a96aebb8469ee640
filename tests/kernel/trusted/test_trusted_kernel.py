"""A real kernel with MODULE_SIG_FORCE that trusts our certificate decides.

It must load modules signed by our signer and by the reference sign-file with
that key, and refuse unsigned, tampered and foreign-key modules: the proof
that our signatures are byte-compatible with what Linux verifies.
"""

from __future__ import annotations

import datetime
import subprocess
from pathlib import Path

import pytest
from cryptography import x509

from livepatch.trust import certs, modsig
from tests.integration.trust.kmod import build_module
from tests.kernel.trusted.kernel_build import TrustedKernel
from tests.kernel.trusted.vm import boot, build_initramfs, results
from tests.unit.trust.pki import Pki

# A cold cache builds the kernel in this test's fixture: about 7 minutes alone on
# these machines, more when they are busy; past pytest's 600 s default.
pytestmark = [pytest.mark.kernel, pytest.mark.timeout(1800)]

SIGN_FILE = "/usr/lib/linux-kbuild-6.1/scripts/sign-file"


def _modules(kernel: TrustedKernel, work: Path) -> dict[str, bytes]:
    unsigned = modsig.strip_signature(build_module(kernel.build_tree).read_bytes())
    key = certs.load_key(kernel.key.key.read_bytes())
    cert = x509.load_pem_x509_certificate(kernel.key.cert.read_bytes())
    ours = modsig.sign_module(unsigned, key, cert)
    assert modsig.verify_module(ours, [cert], now=datetime.datetime.now(datetime.UTC))

    reference = work / "reference.ko"
    reference.write_bytes(unsigned)
    subprocess.run(
        [SIGN_FILE, "sha256", str(kernel.key.key), str(kernel.key.cert), str(reference)],
        check=True,
    )
    tampered = bytearray(ours)
    tampered[len(unsigned) // 2] ^= 0x01
    stranger = Pki("Stranger").issue("signing")
    return {
        "a_ours": ours,
        "b_signfile": reference.read_bytes(),
        "c_unsigned": unsigned,
        "d_tampered": bytes(tampered),
        "e_foreign": modsig.sign_module(unsigned, stranger.key, stranger.cert),
    }


def test_kernel_enforces_our_signatures(trusted_kernel: TrustedKernel, tmp_path: Path) -> None:
    initramfs = build_initramfs(tmp_path, _modules(trusted_kernel, tmp_path))
    console = boot(trusted_kernel.bzimage, initramfs)
    outcome = results(console)
    assert "DONE" in console, console[-3000:]
    assert "SIG_ENFORCE Y" in console
    assert outcome["a_ours"] == "loaded", console[-3000:]
    assert outcome["b_signfile"] == "loaded"
    assert "lptrust: loaded" in console
    for refused in ("c_unsigned", "d_tampered", "e_foreign"):
        assert outcome[refused].startswith("refused"), outcome
        assert "Key was rejected by service" in outcome[refused], outcome
    assert "Loading of unsigned module is rejected" in console
    assert "Loading of module with unavailable key is rejected" in console
