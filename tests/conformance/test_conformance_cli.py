"""`encdec conformance` / `python -m encdec.conformance`: options, MODEL_DIR, exit statuses, lazy imports,
progress lines, quiet framework logs."""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys

import pytest

from encdec.conformance import cli, runners
from encdec.conformance.suite import SuiteError, run_suite
from conformance_helpers import require

BERT2BERT = pathlib.Path(__file__).parents[1] / "fixtures" / "hf" / "bert2bert"


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.run(parser.parse_args([*argv, "--no-progress"]))


def test_python_m_encdec_conformance_help_imports_no_framework():
    code = ("import sys, runpy; sys.argv = ['conformance', '--help']\n"
            "try:\n    runpy.run_module('encdec.conformance', run_name='__main__')\n"
            "except SystemExit as e:\n    assert e.code == 0, e.code\n"
            "import encdec.testing, encdec.conformance.suite\n"
            "loaded = [m for m in ('torch', 'tensorflow', 'jax', 'transformers') if m in sys.modules]\n"
            "assert not loaded, loaded\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for option in ("MODEL_DIR", "--frameworks", "--devices", "--dtypes", "--cases", "--fixtures", "--report",
                   "--verbose"):
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
    assert run_cli("--frameworks", "tf,pt", "--cases", "quick", "--models", "bert2bert") == 2
    assert "framework 'tf' (encdec TensorFlow) was asked for but cannot run: tensorflow is not installed" in \
        capsys.readouterr().err


def test_register_adds_the_conformance_subcommand():
    parser = argparse.ArgumentParser(prog="encdec")
    sub = parser.add_subparsers(dest="command")
    cli.register(sub)
    args = parser.parse_args(["conformance", "some/dir", "--frameworks", "pt,flax", "--dtypes", "float32,bfloat16"])
    assert args.func is cli.run and args.model_dir == "some/dir"
    assert args.frameworks == ["pt", "flax"] and args.dtypes == ["float32", "bfloat16"]
    assert args.devices == ["cpu", "gpu", "tpu"] and args.cases == "default" and args.fixtures is None


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_without_a_terminal_each_run_and_case_prints_one_plain_line_as_it_finishes(capsys):
    require("pt")
    assert cli.progress_mode(_args()) == "lines"  # pytest's stdout is no terminal
    assert cli.progress_mode(_args("--no-progress")) == "none"
    status = cli.run(_args(str(BERT2BERT), "--frameworks", "pt", "--no-reference", "--devices", "cpu",
                           "--items", "forward/golden,generate/greedy"))
    assert status == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("[")]
    assert len(lines) == 2, out
    assert lines[0].endswith("bert2bert: pt on cpu (float32) ran 2 items in " + lines[0].split(" in ")[1])
    assert "bert2bert: pass (" in lines[1] and "[1/1 runs done]" in lines[1]
    assert "\x1b[" not in "".join(lines)  # plain text, no terminal control codes


def test_framework_logs_are_quiet_unless_asked_for_or_set_by_the_user(monkeypatch, tmp_path):
    missing = str(tmp_path / "nowhere")  # the run stops at this option, after the logging is set up
    for verbose, preset, expected in ((False, None, "3"), (True, None, None), (False, "0", "0")):
        if preset is None:
            monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
        else:
            monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", preset)
        assert cli.run(_args("--fixtures", missing, *(["--verbose"] if verbose else []))) == 2
        assert os.environ.get("TF_CPP_MIN_LOG_LEVEL") == expected, (verbose, preset)


def test_tensorflow_c_logging_is_silenced_before_tensorflow_loads():
    """The quiet setting must be made before TensorFlow loads, which reads it at import; the
    oneDNN notice that it does not reach is left out of the import's output."""
    require("tf")
    code = ("import os, sys\n"
            "os.environ.pop('TF_CPP_MIN_LOG_LEVEL', None)\n"
            "from encdec.conformance import cli\n"
            "cli.quiet_framework_logs()\n"
            "from encdec.conformance.runners import TFRunner\n"
            "TFRunner.model_class()\n"
            "import tensorflow as tf\n"
            "tf.debugging.assert_equal(tf.constant(1), tf.constant(1))\n"
            "tf.reduce_any(tf.constant([True, False]))\n"
            "tf.config.list_physical_devices('GPU')\n"
            "print('a warning of our own', file=sys.stderr)\n")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    quiet = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert quiet.returncode == 0, quiet.stderr
    loud = subprocess.run([sys.executable, "-c", code.replace("cli.quiet_framework_logs()\n", "")],
                          capture_output=True, text=True, timeout=300, env=env)
    assert loud.returncode == 0, loud.stderr
    assert quiet.stderr == "a warning of our own\n"
    assert "port.cc" in loud.stderr, "nothing to silence: the check would pass on any setting"


def test_fixture_cases_without_a_fixtures_folder_are_named_as_skipped(tmp_path):
    require("pt", "hf")
    report = tmp_path / "r.json"
    status = run_cli("--cases", "quick", "--fixtures", str(tmp_path), "--frameworks", "pt,hf",
                     "--devices", "cpu", "--models", "fixture:*,bert2bert", "--items", "forward/ragged3",
                     "--report", str(report))
    assert status == 0
    data = json.loads(report.read_text())
    assert data["meta"]["models"] == ["bert2bert"]
    reasons = [s["reason"] for s in data["skipped"]]
    assert any(r.startswith("fixture cases not run: fixture:bert2bert, fixture:bert2gpt2") and str(tmp_path) in r
               for r in reasons), reasons
    # Asked for fixture cases only: an error that says why.
    with pytest.raises(SuiteError, match="need a fixtures folder"):
        run_suite(cases="quick", fixtures_dir=str(tmp_path), models=["fixture:*"], frameworks=["pt"],
                  reference=False, devices=["cpu"])
