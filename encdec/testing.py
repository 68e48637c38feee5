"""Conformance checks for your own CI: the suite as an assertion and a pytest fixture.

    from encdec.testing import assert_conformant

    def test_my_checkpoint_agrees_everywhere():
        assert_conformant("path/to/checkpoint", frameworks=["pt", "flax"])

As a pytest plugin (`pytest_plugins = ["encdec.testing"]` in conftest.py) it
adds the `conformance_report` fixture: a function that runs the suite, writes
its JSON, Markdown and PNG report under the test's tmp_path, and returns the
Report (`.passed`, `.failure_text()`, `.to_json()`).

Nothing here imports a framework until the suite runs.
"""

from __future__ import annotations

from typing import Any, Sequence

try:
    import pytest
except ImportError:  # pytest is only needed for the fixture
    pytest = None

__all__ = ["assert_conformant", "run_conformance", "conformance_report"]


def run_conformance(
    model_dir: str | None = None,
    *,
    frameworks: Sequence[str] | None = None,
    devices: Sequence[str] = ("cpu", "gpu", "tpu"),
    dtypes: Sequence[str] = ("float32",),
    cases: str = "quick",
    report: str | None = None,
    **options: Any,
):
    """Run the conformance suite and return its Report; write it to `report`
    (PATH.json or a folder) when given. `options` go to
    `encdec.conformance.run_suite` (`reference`, `models`, `items`, `progress`,
    `fixtures_dir`)."""
    from encdec.conformance.suite import run_suite

    result = run_suite(model_dir, frameworks=frameworks, devices=devices, dtypes=dtypes, cases=cases, **options)
    if report is not None:
        result.write(report)
    return result


def assert_conformant(
    model_dir: str | None = None,
    *,
    frameworks: Sequence[str] | None = None,
    devices: Sequence[str] = ("cpu", "gpu", "tpu"),
    dtypes: Sequence[str] = ("float32",),
    cases: str = "quick",
    report: str | None = None,
    **options: Any,
):
    """Raise AssertionError listing every disagreement (or that nothing was
    compared); return the Report when everything agrees."""
    result = run_conformance(model_dir, frameworks=frameworks, devices=devices, dtypes=dtypes, cases=cases,
                             report=report, **options)
    if not result.passed:
        where = f" (report: {report})" if report else ""
        raise AssertionError(f"encdec conformance failed for {model_dir or 'the built-in cases'}{where}:\n"
                             + result.failure_text())
    return result


if pytest is not None:

    @pytest.fixture
    def conformance_report(tmp_path):
        """A function `(model_dir=None, **options) -> Report` that runs the suite
        and writes its report to `tmp_path / "conformance"`."""

        def make(model_dir: str | None = None, **options: Any):
            return run_conformance(model_dir, report=str(tmp_path / "conformance"), **options)

        return make
