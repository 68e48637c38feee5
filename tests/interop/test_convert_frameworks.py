"""Conversions against torch and transformers themselves (moved from tests/core): transformers 5 loads
what encdec writes and gives the golden logits; tied storages in .bin files."""

from __future__ import annotations

import pathlib
import sys

# tests/core's independent readers and fixtures (core_refs), shared with the framework tests here.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "core"))

import numpy as np
import pytest

from core_refs import CASES, FIXTURES, case_formats, copy_case, weight_files
from encdec.config import EncoderDecoderConfig
from encdec.errors import CheckpointError
from encdec.weights import convert_checkpoint, load_state, model_spec


def test_bin_keeps_tied_entries_like_transformers(tmp_path):
    """transformers' .bin holds the tied LM head too, sharing the embeddings' storage."""
    import torch

    for case in ("bert2bert", "bert2gpt2"):
        convert_checkpoint(copy_case(case, tmp_path / case, ["flax"]), tmp_path / case / "out", "pt", progress=False)
        ours = torch.load(tmp_path / case / "out" / "pytorch_model.bin", weights_only=True)
        theirs = torch.load(FIXTURES / case / "pytorch_model.bin", weights_only=True)

        def shared(sd):
            groups = {}
            for k, v in sd.items():
                groups.setdefault(v.untyped_storage().data_ptr(), []).append(k)
            return sorted(sorted(g) for g in groups.values() if len(g) > 1)

        assert sorted(ours) == sorted(theirs)
        assert shared(ours) == shared(theirs) != []


HF_TARGETS = [
    (case, src, dst)
    for case in CASES
    for src in case_formats(case)
    for dst in ("safetensors", "pt")
    if src != dst
]


@pytest.mark.parametrize("case,src,dst", HF_TARGETS, ids=[f"{c}-{s}-to-{d}" for c, s, d in HF_TARGETS])
def test_transformers_loads_converted_checkpoint(tmp_path, case, src, dst):
    """transformers' own EncoderDecoderModel loads what encdec wrote, and gives the golden logits."""
    import torch
    from transformers import EncoderDecoderModel
    from transformers.utils import logging

    from interop_refs import golden

    logging.set_verbosity_error()
    convert_checkpoint(copy_case(case, tmp_path / "src", [src]), tmp_path / "out", dst, progress=False)
    model, info = EncoderDecoderModel.from_pretrained(tmp_path / "out", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    g = golden(case)
    with torch.no_grad():
        out = model.eval()(
            input_ids=torch.tensor(g["input_ids"]),
            attention_mask=torch.tensor(g["attention_mask"]),
            decoder_input_ids=torch.tensor(g["decoder_input_ids"]),
        )
    np.testing.assert_allclose(out.logits.numpy(), g["logits"], atol=1e-5, rtol=0)


def test_tied_copy_with_other_values_is_an_error(tmp_path):
    import torch

    case = "bert2gpt2"
    folder = copy_case(case, tmp_path / "untied", [])
    sd = torch.load(FIXTURES / case / "pytorch_model.bin", weights_only=True)
    sd["decoder.lm_head.weight"] = sd["decoder.lm_head.weight"].clone() + 1  # no longer the embeddings
    torch.save(sd, folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"decoder\.lm_head\.weight.*same tensor as.*decoder\.transformer\.wte\.weight.*tied to the word embeddings"):
        convert_checkpoint(folder, tmp_path / "out", "safetensors", progress=False)


@pytest.mark.parametrize("dst", ["safetensors", "pt"])
def test_transformers_loads_sharded_output(tmp_path, dst):
    import torch
    from transformers import EncoderDecoderModel
    from transformers.utils import logging

    from interop_refs import golden

    logging.set_verbosity_error()
    case = "roberta2roberta"
    convert_checkpoint(copy_case(case, tmp_path / "src", ["flax"]), tmp_path / "out", dst, shard_size="70KB", progress=False)
    assert len(weight_files(tmp_path / "out")) > 2
    model, info = EncoderDecoderModel.from_pretrained(tmp_path / "out", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    g = golden(case)
    with torch.no_grad():
        logits = model.eval()(input_ids=torch.tensor(g["input_ids"]), attention_mask=torch.tensor(g["attention_mask"]),
                              decoder_input_ids=torch.tensor(g["decoder_input_ids"])).logits
    np.testing.assert_allclose(logits.numpy(), g["logits"], atol=1e-5, rtol=0)


def test_tie_encoder_decoder_checkpoint(tmp_path):
    """A .bin of a model whose decoder shares the encoder's tensors (tie_encoder_decoder), as torch saves it."""
    import torch
    from transformers import EncoderDecoderConfig as HFConfig
    from transformers import EncoderDecoderModel

    hf_config = HFConfig.from_pretrained(FIXTURES / "bert2bert")
    hf_config.tie_encoder_decoder = True
    torch.manual_seed(0)
    model = EncoderDecoderModel(hf_config)
    config = EncoderDecoderConfig.from_dict(hf_config.to_dict())
    spec = model_spec(config)
    for t in spec.tied:  # share the parameters the config ties (transformers 5 leaves them apart)
        owner, attr = t.name.rsplit(".", 1)
        src_owner, src_attr = t.source.rsplit(".", 1)
        setattr(model.get_submodule(owner), attr, getattr(model.get_submodule(src_owner), src_attr))
    sd = model.state_dict()
    folder = tmp_path / "tied"
    folder.mkdir()
    torch.save(sd, folder / "pytorch_model.bin")
    config.save_pretrained(folder)
    state, report = load_state(folder, spec)
    assert sorted(state) == sorted(p.name for p in spec)
    assert len(report.ignored) == len(spec.tied) > 30
    for name, value in state.items():
        assert np.array_equal(value, sd[name].numpy()), name
    # through every format and back: the shared tensors stay shared in the .bin
    convert_checkpoint(folder, tmp_path / "flax", "flax", progress=False)
    convert_checkpoint(tmp_path / "flax", tmp_path / "back", "pt", progress=False)
    back = torch.load(tmp_path / "back" / "pytorch_model.bin", weights_only=True)
    assert sorted(back) == sorted(sd)
    for t in spec.tied:
        assert back[t.name].untyped_storage().data_ptr() == back[t.source].untyped_storage().data_ptr()
        assert torch.equal(back[t.name], sd[t.name])
