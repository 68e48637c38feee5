"""`import encdec` imports no framework, and the lazy classes name the extra to install."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

FRAMEWORKS = ("torch", "tensorflow", "jax", "flax", "keras")


def _run(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=True)
    return result.stdout


def test_import_encdec_imports_no_framework():
    out = _run(
        f"""
        import json, sys
        import encdec, encdec.config, encdec.weights.names
        print(json.dumps([m for m in {FRAMEWORKS!r} if m in sys.modules]))
        """
    )
    assert json.loads(out) == []


def test_missing_framework_names_the_extra():
    # Pretending torch is not installed: find_spec reports it absent.
    out = _run(
        """
        import importlib.util
        real = importlib.util.find_spec
        importlib.util.find_spec = lambda name, *a: None if name == "torch" else real(name, *a)
        import encdec
        try:
            encdec.EncoderDecoderModel
        except encdec.MissingFrameworkError as e:
            print(e)
        """
    )
    assert "pip install 'encdec[torch]'" in out


def test_unknown_attribute_is_an_attribute_error():
    out = _run(
        """
        import encdec
        try:
            encdec.NoSuchModel
        except AttributeError as e:
            print("AttributeError", e)
        """
    )
    assert out.startswith("AttributeError")
