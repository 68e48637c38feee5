"""Seeded fuzzing of the four formats and the sharded index, under a memory limit (see fuzz_checkpoints.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from core_refs import REPO

FUZZ = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fuzz_checkpoints.py")
# About 170 MB are mapped after the imports; the hostile files ask for 1 to 4 GiB each.
MEMORY_LIMIT = 768 * 2**20


def _fuzz(seed: int, scale: float, timeout: int) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run(
        [sys.executable, FUZZ, str(seed), str(scale), str(MEMORY_LIMIT)],
        capture_output=True, text=True, env=env, timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _check(report: dict) -> None:
    assert report["bad"] == [], "\n".join(report["bad"][:20])
    assert report["bombs"] == {name: "error" for name in report["bombs"]} and len(report["bombs"]) == 4
    for kind, counts in report["counts"].items():
        assert counts.get("error", 0) > 0, kind  # the mutations did break files


def test_fuzz_every_format_under_a_memory_limit():
    _check(_fuzz(seed=20261204, scale=1, timeout=600))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fuzz_longer(seed):
    _check(_fuzz(seed=seed, scale=10, timeout=3600))
