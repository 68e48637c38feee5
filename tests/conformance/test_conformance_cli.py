"""`encdec conformance` / `python -m conformance`: options, MODEL_DIR, exit statuses, lazy imports."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from conformance import cases, cli, runners
from conformance_helpers import require

BERT2BERT = cases.FIXTURES_DIR / "bert2bert"


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.run(parser.parse_args([*argv, "--no-progress"]))


def test_python_m_conformance_help_imports_no_framework():
    code = ("import sys, runpy; sys.argv = ['conformance', '--help']\n"
            "try:\n    runpy.run_module('conformance', run_name='__main__')\n"
            "except SystemExit as e:\n    assert e.code == 0, e.code\n"
            "import encdec.testing, conformance.suite\n"
            "loaded = [m for m in ('torch', 'tensorflow', 'jax', 'transformers') if m in sys.modules]\n"
            "assert not loaded, loaded\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for option in ("MODEL_DIR", "--frameworks", "--devices", "--dtypes", "--cases", "--report"):
        assert option in out.stdout


def test_model_dir_in_another_format_is_converted_for_each_framework(tmp_path):
    """A checkpoint holding only tf_model.h5 is converted by the core to each runner's format."""
    require("pt", "hf")
    from encdec.weights.convert import convert_checkpoint

    src = tmp_path / "only_h5"
    convert_checkpoint(str(BERT2BERT), str(src), to="tf", progress=False)
    assert sorted(p.name for p in src.iterdir()) == ["config.json", "generation_config.json", "tf_model.h5"]
    report = tmp_path / "out" / "conformance.json"
    status = run_cli(str(src), "--frameworks", "pt,hf", "--devices", "cpu", "--items",
                     "forward/ragged3,gradients/*,generate/greedy", "--report", str(report))
    assert status == 0
    data = json.loads(report.read_text())
    assert data["passed"] and data["meta"]["model_dir"] == str(src)
    assert {tuple(c["frameworks"]) for c in data["comparisons"]} == {("pt", "hf")}
    assert {c["item"].split("/")[0] for c in data["comparisons"]} == {"forward", "gradients", "generate"}


def test_model_dir_with_golden_outputs_is_checked_against_them(tmp_path):
    require("pt")
    report = tmp_path / "r.json"
    status = run_cli(str(BERT2BERT), "--frameworks", "pt", "--no-reference", "--devices", "cpu",
                     "--items", "forward/*", "--report", str(report))
    assert status == 0
    data = json.loads(report.read_text())
    assert {tuple(c["frameworks"]) for c in data["comparisons"]} == {("golden", "pt")}


def test_an_unknown_framework_is_an_argument_error(capsys):
    with pytest.raises(SystemExit) as exc:
        run_cli("--frameworks", "pt,mxnet")
    assert exc.value.code == 2 and "unknown value(s) ['mxnet']" in capsys.readouterr().err


def test_a_framework_asked_for_that_cannot_run_is_exit_2(monkeypatch, capsys):
    monkeypatch.setattr(runners.TFRunner, "unavailable", classmethod(lambda cls: "tensorflow is not installed"))
    assert run_cli("--frameworks", "tf,pt", "--models", "bert2bert") == 2
    assert "framework 'tf' (encdec TensorFlow) was asked for but cannot run: tensorflow is not installed" in \
        capsys.readouterr().err


def test_register_adds_the_conformance_subcommand():
    parser = argparse.ArgumentParser(prog="encdec")
    sub = parser.add_subparsers(dest="command")
    cli.register(sub)
    args = parser.parse_args(["conformance", "some/dir", "--frameworks", "pt,flax", "--dtypes", "float32,bfloat16"])
    assert args.func is cli.run and args.model_dir == "some/dir"
    assert args.frameworks == ["pt", "flax"] and args.dtypes == ["float32", "bfloat16"]
    assert args.devices == ["cpu", "gpu", "tpu"] and args.cases == "quick"
