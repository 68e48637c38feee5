"""Checkpoints of a tie_encoder_decoder model: what a save writes, and conversions keep the source's names."""

from __future__ import annotations

import json

import pytest

from core_refs import FILES, FIXTURES, FORMATS, assert_same_tensors, read_native
from encdec.config import EncoderDecoderConfig
from encdec.weights import convert_checkpoint, load_state, model_spec, save_state
from encdec.weights.names import init_weights


def tied_config() -> EncoderDecoderConfig:
    data = json.loads((FIXTURES / "bert2bert" / "config.json").read_text())
    data["tie_encoder_decoder"] = True
    return EncoderDecoderConfig.from_dict(data)


def tied_folder(path, state=None):
    config = tied_config()
    path.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(path)
    return config, model_spec(config), state if state is not None else init_weights(config, seed=5)


def test_save_writes_both_names_of_every_tensor_shared_with_the_encoder(tmp_path):
    config, spec, state = tied_folder(tmp_path / "st")
    shared = spec.tied_pairs(shared_with_encoder=True)
    assert len(shared) > 30 and all(t.startswith("decoder.bert.") and s.startswith("encoder.") for t, s in shared)
    save_state(state, spec, tmp_path / "st", "safetensors")
    written = read_native(tmp_path / "st", "safetensors")
    lm_head = spec.tied_pairs(shared_with_encoder=False)
    assert sorted(written) == sorted([p.name for p in spec] + [t for t, _ in shared])
    assert not set(written) & {t for t, _ in lm_head}  # the LM head is stored once, as transformers does
    for tied, source in shared:
        assert written[tied].tobytes() == written[source].tobytes(), tied
    for fmt in FORMATS:
        folder = tmp_path / fmt
        tied_folder(folder)
        save_state(state, spec, folder, fmt)
        loaded, report = load_state(folder, spec)
        assert_same_tensors(loaded, state, fmt)
        assert {n for n, _ in report.ignored} >= ({t for t, _ in shared} if fmt == "pt" else set())
        native = read_native(folder, fmt)
        for tied, source in shared:
            assert native[spec.native_name(tied, "pt" if fmt in ("pt", "safetensors") else fmt)].tobytes() == \
                native[spec.native_name(source, "pt" if fmt in ("pt", "safetensors") else fmt)].tobytes()


def test_conversion_keeps_the_names_the_source_holds(tmp_path):
    """A file storing the decoder's copy of some shared tensors (as transformers 4.57 does for the embeddings)
    converts through every format back to the same file, byte for byte."""
    from safetensors.numpy import save_file

    config, spec, state = tied_folder(tmp_path / "src")
    decoder_side = {t: s for t, s in spec.tied_pairs(shared_with_encoder=True) if ".embeddings." in t}
    assert "decoder.bert.embeddings.LayerNorm.weight" in decoder_side
    tensors = {}
    for p in spec:
        tied = next((t for t, s in decoder_side.items() if s == p.name), None)
        tensors[tied or p.name] = state[p.name]
    save_file(tensors, str(tmp_path / "src" / FILES["safetensors"]), {"format": "pt"})
    original = (tmp_path / "src" / FILES["safetensors"]).read_bytes()

    loaded, _ = load_state(tmp_path / "src", spec)
    assert_same_tensors(loaded, state)
    current = tmp_path / "src"
    for i, fmt in enumerate(["flax", "tf", "safetensors"]):
        convert_checkpoint(current, tmp_path / str(i), fmt, progress=False)
        current = tmp_path / str(i)
        if fmt == "flax":
            flax_names = set(read_native(current, "flax"))
            assert "decoder/bert/embeddings/LayerNorm/scale" in flax_names
            assert "encoder/embeddings/LayerNorm/scale" not in flax_names
    assert (current / FILES["safetensors"]).read_bytes() == original


def test_a_tied_copy_that_differs_from_its_source_is_an_error(tmp_path):
    from encdec.errors import CheckpointError

    config, spec, state = tied_folder(tmp_path / "src")
    save_state(state, spec, tmp_path / "src", "tf")
    import h5py

    name = "decoder/bert/embeddings/LayerNorm/gamma"
    with h5py.File(tmp_path / "src" / FILES["tf"], "r+") as f:
        ds = f["decoder"][f"tf_encoder_decoder_model/{name}:0"]
        ds[0] = ds[0] + 1.0
    with pytest.raises(CheckpointError, match=r"decoder/bert/embeddings/LayerNorm/gamma.*same tensor as"):
        load_state(tmp_path / "src", spec)
