"""save_pretrained / from_pretrained: formats, shards, transformers reading our files, atomic saves."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

import encdec.weights.convert as convert
from encdec.config import GenerationConfig
from encdec.pt import EncoderDecoderModel
from pt_helpers import (  # noqa: F401
    joined_config,
    one_torch_thread,
    our_model,
    quiet_transformers,
    random_batch,
    random_state,
)


@pytest.fixture(scope="module", params=["bert2bert", "bert2gpt2", "roberta2roberta", "bertgen2bertgen"])
def model(request):
    config = joined_config(request.param, 4)
    m = our_model(config, random_state(config, 4))
    m.generation_config = m.generation_config.update(num_beams=2, max_length=9)
    return m


def logits(m, config):
    b = random_batch(config, np.random.default_rng(9), 2, 7, 5, "right")
    with torch.no_grad():
        return m(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                 decoder_input_ids=b["decoder_input_ids"]).logits


def same_parameters(a, b):
    pa, pb = a._numpy_state(), b._numpy_state()
    assert pa.keys() == pb.keys()
    for name in pa:
        np.testing.assert_array_equal(pa[name], pb[name], err_msg=name)


@pytest.mark.parametrize(
    "options,files",
    [
        ({}, {"model.safetensors"}),
        ({"safe_serialization": False}, {"pytorch_model.bin"}),
        ({"max_shard_size": "20KB"}, {"model.safetensors.index.json"}),
        ({"safe_serialization": False, "max_shard_size": 20_000}, {"pytorch_model.bin.index.json"}),
    ],
)
def test_round_trip(model, tmp_path, options, files):
    model.save_pretrained(tmp_path / "ckpt", **options)
    written = set(os.listdir(tmp_path / "ckpt"))
    assert files | {"config.json", "generation_config.json"} <= written
    if "max_shard_size" in options:
        assert sum(name.endswith((".safetensors", ".bin")) for name in written) > 1
    loaded = EncoderDecoderModel.from_pretrained(tmp_path / "ckpt")
    same_parameters(model, loaded)
    assert loaded.config == model.config.__class__.from_dict({**model.config.to_dict(),
                                                               "architectures": ["EncoderDecoderModel"]})
    assert loaded.generation_config == model.generation_config
    torch.testing.assert_close(logits(loaded, model.config), logits(model, model.config), rtol=0, atol=0)
    # ties are ties again after loading
    params = dict(loaded.named_parameters(remove_duplicate=False))
    for tied in loaded.spec.tied:
        assert params[tied.name] is params[tied.source]


@pytest.mark.parametrize("safe", [True, False])
def test_transformers_loads_what_we_save(model, tmp_path, safe, quiet_transformers):
    import transformers

    model.save_pretrained(tmp_path / "ckpt", safe_serialization=safe)
    hf = transformers.EncoderDecoderModel.from_pretrained(tmp_path / "ckpt").eval()
    np.testing.assert_allclose(logits(hf, model.config).numpy(), logits(model, model.config).numpy(),
                               rtol=0, atol=1e-5)


def test_loading_in_half_precision(model, tmp_path):
    model.save_pretrained(tmp_path / "ckpt")
    half = EncoderDecoderModel.from_pretrained(tmp_path / "ckpt", dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in half.parameters())
    a, b = logits(half, model.config).float(), logits(model, model.config)
    assert (a.argmax(-1) == b.argmax(-1)).float().mean() > 0.8
    half.save_pretrained(tmp_path / "bf16")
    again = EncoderDecoderModel.from_pretrained(tmp_path / "bf16", dtype=torch.bfloat16)
    same_parameters(half, again)


def test_a_failed_save_leaves_the_previous_checkpoint_whole(model, tmp_path, monkeypatch):
    target = tmp_path / "ckpt"
    model.save_pretrained(target)
    before = {name: (target / name).read_bytes() for name in os.listdir(target)}

    real_save_state = convert.save_state

    def crash_after_writing(state, spec, directory, fmt, **kwargs):
        real_save_state(state, spec, directory, fmt, **kwargs)  # the new weights are on disk...
        raise OSError("disk full")  # ...and then the save fails

    changed = our_model(model.config, {k: v + 1.0 for k, v in model._numpy_state().items()})
    monkeypatch.setattr(convert, "save_state", crash_after_writing)
    with pytest.raises(OSError, match="disk full"):
        changed.save_pretrained(target)
    after = {name: (target / name).read_bytes() for name in os.listdir(target)}
    assert after == before
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]  # no temporary folder left behind
    same_parameters(EncoderDecoderModel.from_pretrained(target), model)


def test_generation_config_file_is_read(model, tmp_path):
    model.save_pretrained(tmp_path / "ckpt")
    with open(tmp_path / "ckpt" / "generation_config.json") as f:
        saved = json.load(f)
    assert saved["num_beams"] == 2 and saved["max_length"] == 9
    loaded = EncoderDecoderModel.from_pretrained(tmp_path / "ckpt")
    assert loaded.generation_config.num_beams == 2
    os.remove(tmp_path / "ckpt" / "generation_config.json")
    fallback = EncoderDecoderModel.from_pretrained(tmp_path / "ckpt")
    assert fallback.generation_config == GenerationConfig.from_model_config(model.config)
