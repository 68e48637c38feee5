"""Helpers of the conformance-suite tests: which runners can run here, and sabotage tools.

(A module of its own, not conftest.py, so tests can import it by name.)
"""

from __future__ import annotations

import sys

import pytest

from encdec.conformance.runners import PORTS, REFERENCE, all_runners

RUNNERS = all_runners()


def available(names=None) -> list[str]:
    """Runner names that can run in this environment (ports first, the reference last)."""
    names = list(names or (*PORTS, REFERENCE))
    return [n for n in names if RUNNERS[n].unavailable() is None]


def require(*names: str) -> None:
    """Skip the calling test, naming the reason, when one of the runners cannot run here."""
    for name in names:
        reason = RUNNERS[name].unavailable()
        if reason is not None:
            pytest.skip(f"{RUNNERS[name].label} cannot run here: {reason}")


def patch_everywhere(monkeypatch, package: str, name: str, replacement) -> int:
    """Replace `package.<module>.name` in every loaded module of `package` that holds
    the same object (modules import helpers by name, so patching one module is not
    enough). Returns how many modules were patched; 0 is an error."""
    patched = 0
    original = None
    for mod_name, module in list(sys.modules.items()):
        if module is None or not (mod_name == package or mod_name.startswith(package + ".")):
            continue
        value = getattr(module, name, None)
        if value is None:
            continue
        if original is None:
            original = value
        if value is original:
            monkeypatch.setattr(module, name, replacement)
            patched += 1
    if not patched:
        raise AssertionError(f"no module of {package} defines {name!r}; the sabotage would do nothing")
    return patched
