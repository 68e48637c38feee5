"""encdec.testing: assert_conformant and the conformance_report fixture, for users' CI."""

from __future__ import annotations

import pathlib

import pytest

from conformance_helpers import require
from encdec.testing import assert_conformant, conformance_report  # noqa: F401  (the fixture, used below)

BERT2BERT = str(pathlib.Path(__file__).parents[1] / "fixtures" / "hf" / "bert2bert")


def test_assert_conformant_returns_the_report_when_everything_agrees(tmp_path):
    require("pt")
    report = assert_conformant(BERT2BERT, frameworks=["pt"], reference=False, devices=["cpu"],
                               items=["forward/golden", "generate/greedy"], report=str(tmp_path / "r.json"))
    assert report.passed and (tmp_path / "r.json").is_file() and (tmp_path / "r.md").is_file()


def test_assert_conformant_raises_with_the_failures(monkeypatch):
    require("pt")
    import encdec.pt.encoder_decoder as ed

    real_forward = ed.EncoderDecoderModel.forward

    def off_by_a_little(self, *args, **kwargs):
        out = real_forward(self, *args, **kwargs)
        out.logits = out.logits + 1e-3  # within any "close enough", beyond the table's 1e-5
        return out

    monkeypatch.setattr(ed.EncoderDecoderModel, "forward", off_by_a_little)
    with pytest.raises(AssertionError) as exc:
        assert_conformant(BERT2BERT, frameworks=["pt"], reference=False, devices=["cpu"], items=["forward/golden"])
    text = str(exc.value)
    assert text.startswith(f"encdec conformance failed for {BERT2BERT}")
    assert "bert2bert forward/golden [golden vs pt on cpu, float32]" in text
    assert "logits max_abs_diff=1.00e-03 (expected <= 1.00e-05)" in text
    assert "First disagreeing layer: logits (LM head output)" in text


def test_assert_conformant_raises_when_nothing_was_compared(monkeypatch):
    from encdec.conformance import devices

    monkeypatch.setattr(devices, "PROBES", dict(devices.PROBES, torch=lambda: {"cpu": "cpu"}))
    require("pt")
    with pytest.raises(AssertionError, match="no comparison was made: pt on gpu: absent"):
        assert_conformant(BERT2BERT, frameworks=["pt"], reference=False, devices=["gpu"])


def test_the_conformance_report_fixture_writes_the_report(conformance_report, tmp_path):
    require("pt")
    report = conformance_report(BERT2BERT, frameworks=["pt"], reference=False, devices=["cpu"],
                                items=["forward/golden"])
    assert report.passed
    assert (tmp_path / "conformance" / "conformance.json").is_file()
    assert (tmp_path / "conformance" / "conformance.png").is_file()
