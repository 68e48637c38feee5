"""The exports in the conformance suite: `--frameworks pt,onnx,savedmodel,jax-export` writes each
export from its port, runs it with its own runtime, and compares its logits and ids with the port's
and with transformers' goldens; a perturbed export fails and the report names it."""

from __future__ import annotations

import argparse
import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from conftest import FIXTURES
from conformance_helpers import available

from encdec.conformance import cli

KINDS = ["onnx", pytest.param("savedmodel", marks=pytest.mark.slow), pytest.param("jax-export", marks=pytest.mark.slow)]


def run_cli(tmp_path, *argv: str) -> tuple[int, dict]:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    report = tmp_path / "report.json"
    status = cli.run(parser.parse_args([*argv, "--devices", "cpu", "--no-progress", "--no-reference",
                                        "--report", str(report)]))
    return status, json.loads(report.read_text())


def compared(report: dict, kind: str) -> set[tuple[str, str]]:
    """(other run, item kind) of every passing comparison with `kind`."""
    return {(next(f for f in c["frameworks"] if f != kind), c["item"].split("/")[0])
            for c in report["comparisons"] if kind in c["frameworks"] and c["pass"]}


@pytest.mark.parametrize("kind", KINDS)
def test_an_export_agrees_with_its_port_and_the_goldens(tmp_path, kind):
    if kind not in available([kind]) or "pt" not in available(["pt"]):
        pytest.skip(f"{kind} or pt cannot run here")
    status, report = run_cli(tmp_path, str(FIXTURES / "bert2bert"), "--frameworks", f"pt,{kind}")
    assert status == 0, [c for c in report["comparisons"] if not c["pass"]]
    assert {("pt", "forward"), ("pt", "generate"), ("golden", "forward"), ("golden", "generate")} <= compared(
        report, kind)
    # what an export cannot do is said, not passed over: it computes no gradients
    assert any(s["framework"] == kind and "gradients" in s["reason"] for s in report["skipped"])


def test_a_perturbed_export_fails_the_suite_and_the_report_names_it(tmp_path, monkeypatch):
    if "onnx" not in available(["onnx"]):
        pytest.skip("onnx cannot run here")
    import encdec.export

    real_export = encdec.export.export

    def perturbed_export(source, out, **options):
        # the export is written from a copy of the checkpoint with one tensor of the LM head changed
        copy = tmp_path / "perturbed"
        shutil.copytree(source, copy, dirs_exist_ok=True)
        state = load_file(copy / "model.safetensors")
        name = "decoder.cls.predictions.transform.dense.bias"
        state[name] = state[name] + np.float32(0.05)
        save_file(state, copy / "model.safetensors", metadata={"format": "pt"})
        return real_export(copy, out, **options)

    monkeypatch.setattr(encdec.export, "export", perturbed_export)
    status, report = run_cli(tmp_path, str(FIXTURES / "bert2bert"), "--frameworks", "pt,onnx",
                             "--items", "forward/golden")
    assert status != 0
    bad = [c for c in report["comparisons"] if not c["pass"]]
    assert bad and all("onnx" in c["frameworks"] for c in bad), [c["frameworks"] for c in bad]
    assert any(c["output"] == "logits" for c in bad)
    assert all(c["pass"] for c in report["comparisons"] if "onnx" not in c["frameworks"])
