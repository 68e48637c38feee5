"""The encdec conformance suite: do the PyTorch, TensorFlow and Flax ports compute the same thing?

    from encdec.conformance import run_suite
    report = run_suite(frameworks=["pt", "flax"])   # a Report
    report.print(); report.write("reports/conformance")   # conformance.{json,md,png} there

`encdec conformance` and `python -m encdec.conformance` run it from the command
line; `encdec.testing` wraps it for pytest. The suite reaches the ports only
through their public contract, and imports no framework until a runner needs
it. It never imports `encdec.cli` or `encdec.testing` (both import it).
"""

from __future__ import annotations

__all__ = ["run_suite", "Report", "SuiteError"]


def __getattr__(name: str):
    if name in ("run_suite", "SuiteError"):
        from . import suite

        return getattr(suite, name)
    if name == "Report":
        from .report import Report

        return Report
    raise AttributeError(f"module 'encdec.conformance' has no attribute {name!r}")
