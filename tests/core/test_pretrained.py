"""encdec.weights.pretrained: joining a pretrained encoder and decoder; writing a model folder.

The pretrained halves are written here with the `safetensors` library itself, under
the names transformers' BertModel / BertLMHeadModel store (the core's component specs).
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from encdec.config import BertConfig, EncoderDecoderConfig, GenerationConfig
from encdec.errors import CheckpointError, ConfigError
from encdec.weights.names import decoder_spec, encoder_spec, init_weights, model_spec
from encdec.weights.pretrained import GivenHalf, JoinedPretrained, join_pretrained, write_model_folder

SMALL = dict(vocab_size=99, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=37,
             max_position_embeddings=64)


def write_half(folder, config, spec, seed):
    """A standalone checkpoint: config.json and model.safetensors with random stored tensors."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config.to_dict(), f)
    rng = np.random.default_rng(seed)
    tensors = {p.name: rng.standard_normal(p.shape).astype(np.float32) for p in spec}
    save_file(tensors, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
    return tensors


@pytest.fixture
def halves(tmp_path):
    enc_cfg = BertConfig(**SMALL)
    # A plain causal LM: no cross-attention in the checkpoint.
    dec_cfg = BertConfig(**dict(SMALL, hidden_size=48, intermediate_size=40), is_decoder=True)
    enc = write_half(tmp_path / "enc", enc_cfg, encoder_spec(enc_cfg), seed=1)
    dec = write_half(tmp_path / "dec", dec_cfg, decoder_spec(dec_cfg), seed=2)
    return tmp_path / "enc", tmp_path / "dec", enc, dec


def test_join_loads_both_halves_and_draws_the_rest(halves, caplog):
    enc_dir, dec_dir, enc, dec = halves
    kwargs = {"decoder_start_token_id": 2, "pad_token_id": 0, "encoder_layer_norm_eps": 1e-6}
    with caplog.at_level(logging.WARNING, logger="encdec"):
        joined = join_pretrained(enc_dir, dec_dir, kwargs, init_seed=7)
    assert isinstance(joined, JoinedPretrained)
    config, state, drawn = joined
    assert kwargs == {"decoder_start_token_id": 2, "pad_token_id": 0, "encoder_layer_norm_eps": 1e-6}  # not changed
    assert config.encoder.layer_norm_eps == 1e-6
    assert config.decoder_start_token_id == 2 and config.pad_token_id == 0
    assert config.decoder.is_decoder and config.decoder.add_cross_attention
    spec = model_spec(config)
    assert set(state) == {p.name for p in spec}
    for name, array in enc.items():
        np.testing.assert_array_equal(state[f"encoder.{name}"], array)
    for name, array in dec.items():
        np.testing.assert_array_equal(state[f"decoder.{name}"], array)
    # What neither checkpoint holds: cross-attention, and the projection between widths 32 and 48.
    expected = [p.name for p in spec if "crossattention" in p.name or p.name.startswith("enc_to_dec_proj.")]
    assert any(n.startswith("enc_to_dec_proj.") for n in expected) and drawn == expected
    reference = init_weights(config, seed=7)
    for name in drawn:
        np.testing.assert_array_equal(state[name], reference[name])
    assert f"{len(expected)} parameter(s) are not in the pretrained checkpoints" in caplog.text
    assert "seed 7" in caplog.text and expected[0] in caplog.text


def test_seed_changes_only_the_drawn_tensors(halves):
    enc_dir, dec_dir, _, _ = halves
    config, a, drawn = join_pretrained(enc_dir, dec_dir, {}, init_seed=0)
    _, b, _ = join_pretrained(enc_dir, dec_dir, {}, init_seed=1)
    # Only weight matrices are drawn at random; biases (0) and LayerNorm scales (1) are the same for every seed.
    random = {p.name for p in model_spec(config) if p.kind in ("dense", "conv1d", "embedding")}
    assert random & set(drawn)
    for name in a:
        assert np.array_equal(a[name], b[name]) == (name not in drawn or name not in random), name


def test_role_options_and_configs(halves):
    enc_dir, dec_dir, _, _ = halves
    config, _, _ = join_pretrained(enc_dir, dec_dir, {"encoder_hidden_dropout_prob": 0.3,
                                                      "decoder_attention_probs_dropout_prob": 0.2})
    assert config.encoder.hidden_dropout_prob == 0.3 and config.decoder.attention_probs_dropout_prob == 0.2
    assert config.decoder.hidden_dropout_prob == 0.1
    # A decoder config given as the encoder's is made a plain encoder.
    as_decoder = BertConfig(**SMALL, is_decoder=True, add_cross_attention=True)
    config, state, _ = join_pretrained(enc_dir, dec_dir, {"encoder_config": as_decoder})
    assert not config.encoder.is_decoder and not config.encoder.add_cross_attention
    assert as_decoder.is_decoder  # the caller's config is not changed
    assert not any(n.startswith("encoder.") and "crossattention" in n for n in state)


def test_given_half_with_its_state(halves):
    _, dec_dir, enc, dec = halves
    enc_cfg = BertConfig(**SMALL)
    own = {name: np.full_like(array, 0.25) for name, array in enc.items()}
    config, state, drawn = join_pretrained(None, dec_dir, {}, given={"encoder": GivenHalf(enc_cfg, own)})
    for name in own:
        np.testing.assert_array_equal(state[f"encoder.{name}"], 0.25)
    for name, array in dec.items():
        np.testing.assert_array_equal(state[f"decoder.{name}"], array)
    assert not any(n.startswith("encoder.") for n in drawn)
    # A given state may leave names out: those are drawn.
    partial = {k: v for k, v in own.items() if not k.startswith("pooler.")}
    _, state, drawn = join_pretrained(None, dec_dir, {}, given={"encoder": GivenHalf(enc_cfg, partial)})
    assert [n for n in drawn if n.startswith("encoder.")] == ["encoder.pooler.dense.weight", "encoder.pooler.dense.bias"]


def test_given_half_kept_by_the_port(halves):
    enc_dir, _, enc, _ = halves
    dec_cfg = BertConfig(**dict(SMALL, hidden_size=48, intermediate_size=40), is_decoder=True)
    config, state, drawn = join_pretrained(enc_dir, None, {}, given={"decoder": GivenHalf(dec_cfg)})
    assert not any(n.startswith("decoder.") for n in list(state) + drawn)
    assert {n for n in state if n.startswith("encoder.")} == {f"encoder.{n}" for n in enc}
    assert config.decoder.add_cross_attention and not dec_cfg.add_cross_attention


def test_join_errors(halves):
    enc_dir, dec_dir, enc, _ = halves
    with pytest.raises(ConfigError, match="^no decoder given; expected decoder_pretrained_model_name_or_path"):
        join_pretrained(enc_dir, None, {})
    with pytest.raises(ConfigError, match=r"^encoder_model is a builtins\.object; expected a model of this port"):
        join_pretrained(enc_dir, dec_dir, {"encoder_model": object()})
    bad = dict(enc, **{"not.a.name": np.zeros(2, np.float32)})
    with pytest.raises(ConfigError, match=r"given encoder state has 1 name\(s\) .*encoder\.not\.a\.name"):
        join_pretrained(None, dec_dir, {}, given={"encoder": GivenHalf(BertConfig(**SMALL), bad)})
    with pytest.raises(ConfigError, match="given half"):
        join_pretrained(enc_dir, dec_dir, {}, given={"middle": GivenHalf(BertConfig(**SMALL))})
    with pytest.raises(ConfigError, match="encoder options"):
        join_pretrained(None, dec_dir, {"encoder_hidden_dropout_prob": 0.2},
                        given={"encoder": GivenHalf(BertConfig(**SMALL), enc)})


# ---------------------------------------------------------------------------- write_model_folder


@pytest.fixture
def model():
    config = EncoderDecoderConfig.from_encoder_decoder_configs(
        BertConfig(**SMALL), BertConfig(**SMALL), decoder_start_token_id=2, pad_token_id=0
    )
    return config, init_weights(config, seed=3), model_spec(config)


def test_write_model_folder(tmp_path, model):
    config, state, spec = model
    folder = tmp_path / "out"
    gc = GenerationConfig(decoder_start_token_id=2, num_beams=3)
    written = write_model_folder(folder, state, spec, config, gc)
    assert written == ["model.safetensors"]
    on_disk = load_file(str(folder / "model.safetensors"))
    # transformers stores a tied tensor once; every stored name is there with its value.
    for p in spec:
        np.testing.assert_array_equal(on_disk[p.name], state[p.name])
    saved = json.loads((folder / "config.json").read_text())
    assert saved["architectures"] == ["EncoderDecoderModel"]
    assert EncoderDecoderConfig.from_dict(saved).decoder_start_token_id == 2
    assert "architectures" not in config.to_dict()  # the caller's config is not changed
    assert json.loads((folder / "generation_config.json").read_text()) == {"decoder_start_token_id": 2, "num_beams": 3}


def test_rewrite_drops_stale_weights_and_keeps_other_files(tmp_path, model):
    config, state, spec = model
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "pytorch_model.bin").write_bytes(b"stale")
    (folder / "tf_model.h5").write_bytes(b"stale")
    (folder / "README.md").write_text("notes")
    write_model_folder(folder, state, spec, config, None, fmt="safetensors")
    assert sorted(os.listdir(folder)) == ["README.md", "config.json", "model.safetensors"]
    assert (folder / "README.md").read_text() == "notes"


def test_sharded_write(tmp_path, model):
    config, state, spec = model
    folder = tmp_path / "out"
    written = write_model_folder(folder, state, spec, config, None, shard_size="20KB")
    shards = sorted(n for n in os.listdir(folder) if n.endswith(".safetensors"))
    assert len(shards) > 1 and "model.safetensors.index.json" in os.listdir(folder)
    assert set(shards) <= set(written)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == {p.name for p in spec}
    merged = {}
    for shard in shards:
        merged.update(load_file(str(folder / shard)))
    for p in spec:
        np.testing.assert_array_equal(merged[p.name], state[p.name])


def test_failed_write_leaves_the_old_folder_whole(tmp_path, model):
    config, state, spec = model
    folder = tmp_path / "out"
    write_model_folder(folder, state, spec, config, None)
    before = {n: (folder / n).read_bytes() for n in os.listdir(folder)}
    broken = dict(state)
    del broken[spec.params[0].name]
    with pytest.raises(CheckpointError, match=f"the state lacks 1 stored tensor.*{spec.params[0].name}"):
        write_model_folder(folder, broken, spec, config, None)
    with pytest.raises(CheckpointError, match="unknown format"):
        write_model_folder(folder, state, spec, config, None, fmt="onnx")
    with pytest.raises(ConfigError):
        write_model_folder(folder, state, spec, config, None, shard_size="lots")
    assert {n: (folder / n).read_bytes() for n in os.listdir(folder)} == before


def test_tied_halves_take_the_decoder_checkpoint_values(tmp_path):
    # transformers 4.57 ties by pointing the encoder's modules at the decoder's weights, so with two
    # different checkpoints the shared tensors hold the decoder checkpoint's values.
    enc_cfg = BertConfig(**SMALL)
    dec_cfg = BertConfig(**SMALL, is_decoder=True)
    enc = write_half(tmp_path / "enc", enc_cfg, encoder_spec(enc_cfg), seed=1)
    dec = write_half(tmp_path / "dec", dec_cfg, decoder_spec(dec_cfg), seed=2)
    config, state, drawn = join_pretrained(tmp_path / "enc", tmp_path / "dec", {"tie_encoder_decoder": True})
    pairs = model_spec(config).tied_pairs(shared_with_encoder=True)
    assert pairs
    for tied, source in pairs:
        assert tied not in state
        np.testing.assert_array_equal(state[source], dec[tied[len("decoder."):]])
        assert not np.array_equal(state[source], enc[source[len("encoder."):]])
        assert source not in drawn
    # What is not shared keeps each half's own values.
    shared_sources = {source for _, source in pairs}
    kept = [n for n in enc if f"encoder.{n}" not in shared_sources]
    assert kept
    for name in kept:
        np.testing.assert_array_equal(state[f"encoder.{name}"], enc[name])
