from __future__ import annotations

import pytest

from tests.kernel.trusted.kernel_build import TrustedKernel, ensure_kernel


@pytest.fixture(scope="session")
def trusted_kernel() -> TrustedKernel:
    """The cached kernel that trusts the fixed test key (built on first use, ~7-12 min)."""
    return ensure_kernel()
