"""report.py: the verdict, JSON, Markdown, PNG and the terminal table, from a made-up run."""

from __future__ import annotations

import io
import json

import numpy as np
from rich.console import Console

from encdec.conformance.compare import compare_generated, compare_outputs, diagnose_layers, flatten
from encdec.conformance.devices import Run, Skip
from encdec.conformance.report import Report


def _outputs(shift_layer: str | None = None):
    rng = np.random.default_rng(0)
    out = flatten({
        "logits": rng.normal(size=(1, 2, 4)).astype(np.float32),
        "encoder_hidden_states": tuple(rng.normal(size=(1, 3, 4)).astype(np.float32) for _ in range(3)),
        "decoder_hidden_states": tuple(rng.normal(size=(1, 2, 4)).astype(np.float32) for _ in range(3)),
    })
    if shift_layer:
        out = {k: v.copy() for k, v in out.items()}
        for name in (shift_layer, "logits"):
            out[name] = out[name] + 0.5
    return out


def _report(broken: bool) -> Report:
    runs = [Run("pt", "cpu", "cpu", "float32"), Run("tf", "cpu", "/CPU:0", "float32")]
    report = Report(runs=runs, skips=[Skip("pt", "gpu", None, "absent: torch sees no GPU")], meta={"cases": "quick"})
    ctx = dict(case="bert2bert", item="forward/ragged3", frameworks=("pt", "tf"), device="cpu", dtype="float32")
    a, b = _outputs(), _outputs("decoder_hidden_states.1" if broken else None)
    report.add(compare_outputs(a, b, ctx, real=False))
    report.diagnoses.append(diagnose_layers(a, b, ctx, 1e-5))
    ids = np.array([[2, 5, 6]])
    report.add([compare_generated(ids, ids, dict(ctx, item="generate/greedy"), pad=0)])
    report.cases["bert2bert"] = {"real": False}
    return report


def test_a_passing_report(tmp_path):
    report = _report(broken=False)
    assert report.passed and report.exit_status == 0 and report.failure_lines() == []
    written = report.write(str(tmp_path / "out"))
    assert sorted(written) == ["json", "markdown", "png"]
    data = json.loads(open(written["json"]).read())
    assert data["passed"] and data["summary"] == {"comparisons": 8, "failed": 0, "errors": 0}
    assert data["skipped"] == [{"framework": "pt", "device": "gpu", "dtype": None,
                                "reason": "absent: torch sees no GPU"}]
    assert data["devices_run"] == {"pt": ["cpu"], "tf": ["cpu"]}
    assert "| bert2bert | pt vs tf | cpu | float32 | 7 ok | - | 1 ok | - | pass |" in open(written["markdown"]).read()


def test_a_failing_report_names_the_output_and_the_first_bad_layer(tmp_path):
    report = _report(broken=True)
    assert not report.passed and report.exit_status == 1
    (line,) = report.failure_lines()
    assert line.startswith("bert2bert forward/ragged3 [pt vs tf on cpu, float32]: 2 of 7 checks disagree")
    assert "decoder_hidden_states.1 max_abs_diff=0.5 (expected <= 1.00e-05)" in line
    assert "First disagreeing layer: decoder_hidden_states.1 (decoder layer 0 output)" in line
    written = report.write(str(tmp_path / "r.json"))
    assert written["json"] == str(tmp_path / "r.json") and written["markdown"] == str(tmp_path / "r.md")
    md = open(written["markdown"]).read()
    assert "**FAIL**" in md and "## Failures" in md and "first bad layer decoder_hidden_states.1" in md

    from rich.console import Console

    console = Console(file=io.StringIO(), width=250)
    report.print(console)
    text = console.file.getvalue()
    assert "FAIL: forward/ragged3 logits (first bad layer decoder_hidden_states.1)" in text
    assert "skipped pt on gpu: absent" in text and "FAIL: 8 checks, 2 failed" in text


def test_nan_values_stay_valid_json_and_errors_count_as_failures():
    report = _report(broken=False)
    ctx = dict(case="x", item="forward/a", frameworks=("pt", "tf"), device="cpu", dtype="float32")
    a = {"logits": np.array([np.nan], np.float32)}
    report.add(compare_outputs(a, {"logits": np.zeros(1, np.float32)}, ctx, real=False))
    data = json.loads(json.dumps(report.to_json(), allow_nan=False))
    assert data["comparisons"][-1]["value"] == "nan" and not data["passed"]


def test_nothing_compared_is_not_a_pass():
    report = Report(skips=[Skip("pt", "gpu", None, "absent: torch sees no GPU")])
    assert not report.passed and report.exit_status == 2
    assert report.failure_text() == "no comparison was made: pt on gpu: absent: torch sees no GPU"


def test_frameworks_that_all_lack_a_device_share_one_skipped_line():
    skips = [Skip(f, d, None, f"absent: {lib} sees no {d.upper()}")
             for d in ("gpu", "tpu") for f, lib in (("pt", "torch"), ("tf", "tensorflow"), ("hf", "torch"))]
    skips.append(Skip("flax", "cpu", "bfloat16", "bfloat16 not supported by jax on cpu: boom"))
    report = Report(runs=[Run("pt", "cpu", "cpu", "float32")], skips=skips)
    console = Console(file=io.StringIO(), width=200)
    report.print(console=console)
    lines = [line for line in console.file.getvalue().splitlines() if line.startswith("skipped")]
    assert lines == ["skipped gpu for pt, tf, hf: absent (torch, tensorflow see no GPU)",
                     "skipped tpu for pt, tf, hf: absent (torch, tensorflow see no TPU)",
                     "skipped flax on cpu (bfloat16): bfloat16 not supported by jax on cpu: boom"]
    assert "- gpu for pt, tf, hf: absent" in report.to_markdown()
    assert len(report.to_json()["skipped"]) == 7  # the JSON keeps every skip
