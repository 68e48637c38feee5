"""transformers 4.57 as the reference where it defined the behaviour: a tied bert2bert
(`tie_encoder_decoder=True`) that 4.57 saved, and which half's values a tied join keeps.

The expected values are 4.57's own, computed once into tests/fixtures/hf/transformers457
by tools/make_457_fixtures.py (in .venv-457, see tools/venv457.sh). The slow test runs
4.57 itself, in .venv-457, on what encdec saves.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from safetensors.numpy import load_file

from encdec.weights import convert_checkpoint

REPO = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "hf" / "transformers457"
TIED = FIXTURES / "tied_bert2bert"
HALVES = FIXTURES / "tie_halves"
VENV457 = REPO / ".venv-457"
PORTS = ("pt", "tf", "flax")
# float32 logits of a 2-layer model: the ports agree with torch to ~1e-6; 1e-5 leaves room for TF/XLA.
ATOL = 1e-5


def _arrays(path: pathlib.Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def _model_class(port: str):
    if port == "pt":
        from encdec.pt import EncoderDecoderModel
        return EncoderDecoderModel
    if port == "tf":
        from encdec.tf import TFEncoderDecoderModel
        return TFEncoderDecoderModel
    from encdec.flax import FlaxEncoderDecoderModel
    return FlaxEncoderDecoderModel


def _forward(model, port: str, g: dict[str, np.ndarray]):
    inputs = dict(input_ids=g["input_ids"], attention_mask=g["attention_mask"],
                  decoder_input_ids=g["decoder_input_ids"])
    if port == "pt":
        import torch

        with torch.no_grad():
            out = model.eval()(**{k: torch.tensor(v) for k, v in inputs.items()})
        return {k: getattr(out, k).numpy() for k in ("logits", "encoder_last_hidden_state")}
    out = model(**inputs)
    return {k: np.asarray(getattr(out, k)) for k in ("logits", "encoder_last_hidden_state")}


@pytest.mark.parametrize("port", PORTS)
def test_the_tied_checkpoint_457_saved_gives_its_logits(port):
    g = _arrays(TIED / "golden.npz")
    model = _model_class(port).from_pretrained(TIED)
    np.testing.assert_allclose(_forward(model, port, g)["logits"], g["logits"], atol=ATOL, rtol=0)


@pytest.mark.parametrize("port", PORTS)
def test_a_tied_join_keeps_the_decoders_values_as_457_does(port):
    """from_encoder_decoder_pretrained(enc, dec, tie_encoder_decoder=True) on two different halves."""
    facts = json.loads((FIXTURES / "tie_direction.json").read_text())
    # What 4.57 did: the shared tensors hold the decoder half's values.
    assert facts["encoder_probe_equals_decoder_half"] and not facts["encoder_probe_equals_encoder_half"]
    g = _arrays(FIXTURES / "tie_direction.npz")
    model = _model_class(port).from_encoder_decoder_pretrained(
        str(HALVES / "encoder"), str(HALVES / "decoder"), tie_encoder_decoder=True)
    ours = _forward(model, port, g)
    np.testing.assert_allclose(ours["encoder_last_hidden_state"], g["encoder_last_hidden_state"], atol=ATOL, rtol=0)
    np.testing.assert_allclose(ours["logits"], g["logits"], atol=ATOL, rtol=0)
    # The same fact read from encdec's model and the halves' files.
    probe = facts["probe"]
    state = model.canonical_state()
    decoder_half = load_file(str(HALVES / "decoder" / "model.safetensors"))
    np.testing.assert_array_equal(state["encoder." + probe], decoder_half["bert." + probe])


@pytest.mark.parametrize("dst", ["safetensors", "pt"])
def test_convert_keeps_the_tensor_names_457_stored(tmp_path, dst):
    """Converting 4.57's tied file keeps its names (the decoder's copies of the shared tensors) and values."""
    source = load_file(str(TIED / "model.safetensors"))
    mid = tmp_path / "mid"
    out = tmp_path / "out"
    # Through another format and back, so the names cannot survive by a plain copy of the file.
    convert_checkpoint(TIED, mid, dst, progress=False)
    convert_checkpoint(mid, out, "safetensors", progress=False)
    converted = load_file(str(out / "model.safetensors"))
    assert sorted(converted) == sorted(source)
    for name, value in source.items():
        assert converted[name].dtype == value.dtype, name
        np.testing.assert_array_equal(converted[name], value, err_msg=name)


# --- what encdec saves for a tied model, loaded by transformers 4.57 and 5 -----------------------

_LOAD_457 = textwrap.dedent("""
    import json, sys
    import numpy as np, torch, transformers
    from transformers import EncoderDecoderModel
    transformers.logging.set_verbosity_error()
    out = {}
    g = np.load(sys.argv[1])
    for folder in sys.argv[2:]:
        model, info = EncoderDecoderModel.from_pretrained(folder, output_loading_info=True)
        with torch.no_grad():
            logits = model.eval()(input_ids=torch.tensor(g["input_ids"]),
                                  attention_mask=torch.tensor(g["attention_mask"]),
                                  decoder_input_ids=torch.tensor(g["decoder_input_ids"])).logits.numpy()
        np.save(folder + "/logits457.npy", logits)
        out[folder] = dict(version=transformers.__version__,
                           info={k: sorted(map(str, v)) for k, v in info.items()})
    print(json.dumps(out))
""")


def _venv457_python() -> pathlib.Path:
    python = VENV457 / "bin" / "python"
    if not (VENV457 / ".installed-stamp").is_file():
        subprocess.run(["bash", str(REPO / "tools" / "venv457.sh")], check=True)
    return python


def _save(port: str, fmt: str, folder: pathlib.Path) -> None:
    model = _model_class(port).from_pretrained(TIED)
    model.save_pretrained(folder, safe_serialization=fmt == "safetensors")


# (port, format written) pairs: every port's safetensors, and PyTorch's .bin.
SAVES = [("pt", "safetensors"), ("pt", "pt"), ("tf", "safetensors"), ("flax", "safetensors")]


@pytest.mark.slow
def test_encdecs_tied_save_loads_completely_in_transformers_457_and_5(tmp_path):
    import torch
    import transformers
    from transformers import EncoderDecoderModel as HFModel

    transformers.logging.set_verbosity_error()
    g = _arrays(TIED / "golden.npz")
    folders = {}
    for port, fmt in SAVES:
        folders[port, fmt] = tmp_path / f"{port}-{fmt}"
        _save(port, fmt, folders[port, fmt])
    expected = _forward(_model_class("pt").from_pretrained(TIED), "pt", g)["logits"]

    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([str(_venv457_python()), "-c", _LOAD_457, str(TIED / "golden.npz"),
                           *map(str, folders.values())], capture_output=True, text=True, env=env)
    assert done.returncode == 0, f"transformers 4.57 could not load encdec's tied save:\n{done.stderr[-3000:]}"
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    for key, folder in folders.items():
        report = seen[str(folder)]
        assert report["version"].startswith("4.57."), report
        for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
            assert not report["info"].get(kind), (key, kind, report["info"])
        np.testing.assert_allclose(np.load(folder / "logits457.npy"), expected, atol=ATOL, rtol=0, err_msg=str(key))

        # transformers 5 (this environment), which does not tie encoder and decoder: every weight is found.
        model, info = HFModel.from_pretrained(folder, output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], (key, info)
        with torch.no_grad():
            logits = model.eval()(**{k: torch.tensor(g[k]) for k in ("input_ids", "attention_mask",
                                                                     "decoder_input_ids")}).logits.numpy()
        np.testing.assert_allclose(logits, expected, atol=ATOL, rtol=0, err_msg=str(key))
