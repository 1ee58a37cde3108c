"""The flat public API: what `import grantex_guard` offers, and its cost."""

from __future__ import annotations

import subprocess
import sys

import grantex_guard

EXPECTED = {
    "Budget", "DelegationDenied", "Grant", "GrantexUnavailable", "Guard", "GuardError",
    "InsufficientScope", "ProofInvalid", "ProofRequired", "Requirement", "Scope", "ScopeSet",
    "TokenExpired", "TokenInvalid", "TokenMissing", "TokenRevoked", "__version__",
}


def test_all_lists_exactly_the_public_names() -> None:
    assert set(grantex_guard.__all__) == EXPECTED
    for name in grantex_guard.__all__:
        assert getattr(grantex_guard, name) is not None


def test_every_error_derives_from_guard_error() -> None:
    for name in grantex_guard.__all__:
        value = getattr(grantex_guard, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, grantex_guard.GuardError)


def test_importing_the_package_loads_no_web_framework() -> None:
    code = (
        "import sys, grantex_guard; "
        "print(','.join(m for m in ('starlette', 'fastapi', 'django', 'flask', 'redis') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == ""
