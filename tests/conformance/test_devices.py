"""Devices: absent GPUs/TPUs are skipped with a reason, a present GPU is dispatched to, TF32 is off."""

from __future__ import annotations

import json

import pytest

from encdec.conformance import devices, runners
from encdec.conformance.suite import run_suite
from conformance_helpers import available, require

CPU_ONLY = {"torch": lambda: {"cpu": "cpu"}, "tensorflow": lambda: {"cpu": "/CPU:0"}, "jax": lambda: {"cpu": "cpu"}}


class _FakeRunner:
    def __init__(self, name, library, bf16=True):
        self.name, self.library, self.bf16 = name, library, bf16

    def supports_dtype(self, device, dtype):
        return None if dtype == "float32" or self.bf16 else f"no bfloat16 on {device}"


def test_plan_dispatches_to_present_devices_and_skips_absent_ones(monkeypatch):
    monkeypatch.setattr(devices, "PROBES", {
        "torch": lambda: {"cpu": "cpu", "gpu": "cuda:0"},
        "tensorflow": lambda: {"cpu": "/CPU:0"},
        "jax": lambda: {"cpu": "cpu", "gpu": "gpu", "tpu": "tpu"},
    })
    fakes = [_FakeRunner("pt", "torch"), _FakeRunner("tf", "tensorflow", bf16=False), _FakeRunner("flax", "jax")]
    runs, skips = devices.plan_runs(fakes, ["cpu", "gpu", "tpu"], ["float32", "bfloat16"])
    got = {(r.framework, r.device, r.dtype): r.device_name for r in runs}
    assert got[("pt", "gpu", "float32")] == "cuda:0" and got[("pt", "gpu", "bfloat16")] == "cuda:0"
    assert got[("flax", "tpu", "bfloat16")] == "tpu" and got[("flax", "gpu", "float32")] == "gpu"
    assert ("tf", "cpu", "float32") in got and ("tf", "cpu", "bfloat16") not in got
    reasons = {(s.framework, s.device, s.dtype): s.reason for s in skips}
    assert reasons[("pt", "tpu", None)].startswith("absent")
    assert reasons[("tf", "gpu", None)].startswith("absent") and reasons[("tf", "tpu", None)].startswith("absent")
    assert reasons[("tf", "cpu", "bfloat16")] == "no bfloat16 on cpu"
    with pytest.raises(ValueError, match="unknown device 'cuda'"):
        devices.plan_runs(fakes, ["cuda"], ["float32"])


def test_absent_gpu_and_tpu_are_skipped_with_a_reason_never_an_error(monkeypatch, tmp_path):
    names = available(["pt", "hf"])
    if not names:
        pytest.skip("neither the PyTorch port nor transformers can run here")
    monkeypatch.setattr(devices, "PROBES", dict(CPU_ONLY))
    report = run_suite(cases="quick", frameworks=names, devices=["cpu", "gpu", "tpu"], models=["bert2bert_tied"],
                       items=["forward/*"], reference=False, workdir=str(tmp_path))
    assert report.exit_status == 0, report.failure_text()
    skipped = {(s.framework, s.device) for s in report.skips}
    assert skipped == {(n, d) for n in names for d in ("gpu", "tpu")}
    assert all(s.reason.startswith("absent") for s in report.skips)
    data = json.loads(json.dumps(report.to_json()))
    assert data["devices_run"] == {n: ["cpu"] for n in names}
    assert {(s["framework"], s["device"]) for s in data["skipped"]} == skipped
    assert "gpu" in report.to_markdown() and "absent" in report.to_markdown()


def test_only_absent_devices_means_nothing_compared_exit_2(monkeypatch, tmp_path):
    monkeypatch.setattr(devices, "PROBES", dict(CPU_ONLY))
    names = available(["pt", "hf"])
    if not names:
        pytest.skip("neither the PyTorch port nor transformers can run here")
    report = run_suite(cases="quick", frameworks=names, devices=["gpu"], models=["bert2bert_tied"],
                       items=["forward/*"], reference=False, workdir=str(tmp_path))
    assert report.runs == [] and report.exit_status == 2 and not report.passed
    assert "no comparison was made" in report.failure_text() and "absent" in report.failure_text()


def test_a_present_gpu_is_run_and_compared_across_devices(monkeypatch, tmp_path):
    """A GPU the probe reports is dispatched to like any device: runs on it, TF32 turned
    off first, pairs compared on it and against the CPU. (The simulated GPU is served
    by the CPU, so the runners really run.)"""
    require("pt", "hf")
    monkeypatch.setattr(devices, "PROBES", dict(CPU_ONLY, torch=lambda: {"cpu": "cpu", "gpu": "cpu"}))
    calls = []
    real = runners.disable_tf32
    monkeypatch.setattr(runners, "disable_tf32", lambda library: (calls.append(library), real(library)))
    report = run_suite(cases="quick", frameworks=["pt", "hf"], devices=["cpu", "gpu"], models=["bert2bert_tied"],
                       items=["forward/*", "generate/greedy"], workdir=str(tmp_path))
    assert report.passed, report.failure_text()
    assert {(r.framework, r.device) for r in report.runs} == {(f, d) for f in ("pt", "hf") for d in ("cpu", "gpu")}
    assert calls == ["torch"] * 4
    pairs = {(c.frameworks, c.device) for c in report.comparisons}
    assert (("pt", "hf"), "gpu") in pairs and (("pt", "pt"), "cpu|gpu") in pairs and (("pt", "hf"), "cpu") in pairs
    assert report.to_json()["devices_run"] == {"pt": ["cpu", "gpu"], "hf": ["cpu", "gpu"]}


def test_tf32_is_turned_off_in_every_installed_framework():
    if runners.RUNNERS["pt"].unavailable() is None or runners.RUNNERS["hf"].unavailable() is None:
        import torch

        torch.backends.cuda.matmul.allow_tf32 = True
        devices.disable_tf32("torch")
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    if runners.RUNNERS["flax"].unavailable() is None:
        import jax

        devices.disable_tf32("jax")
        assert jax.config.jax_default_matmul_precision == "highest"
    if runners.RUNNERS["tf"].unavailable() is None:
        import tensorflow as tf

        devices.disable_tf32("tensorflow")
        assert not tf.config.experimental.tensor_float_32_execution_enabled()
    with pytest.raises(ValueError, match="unknown framework library"):
        devices.disable_tf32("mxnet")
