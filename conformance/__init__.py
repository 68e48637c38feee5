"""The encdec conformance suite: do the PyTorch, TensorFlow and Flax ports compute the same thing?

    from conformance import run_suite
    report = run_suite(frameworks=["pt", "flax"])   # a Report
    report.print(); report.write("reports/conformance.json")

`encdec conformance` and `python -m conformance` run it from the command line;
`encdec.testing` wraps it for pytest. No framework is imported until a runner
needs it.
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
    raise AttributeError(f"module 'conformance' has no attribute {name!r}")
