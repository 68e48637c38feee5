"""One architecture's own folder (`encdec.weights.component`): the names transformers gives each class
alone, round trips in every format, what a decoder class draws from an encoder's folder, bad folders."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest

import encdec.weights.convert as convert
from encdec.config import CONFIG_NAME
from encdec.errors import CheckpointError, ConfigError
from encdec.weights.component import (
    architecture_spec,
    class_component,
    read_component_folder,
    write_component_folder,
)
from encdec.weights.formats import open_checkpoint
from encdec.weights.names import init_weights
from encdec.weights.pretrained import read_model_folder
from core_refs import case_formats
from tiny_models import arch_config

FORMATS = ("safetensors", "pt", "tf", "flax")
# How each format joins a name's scopes: the first is the half of the encoder-decoder.
SEPARATOR = {"safetensors": ".", "pt": ".", "tf": "/", "flax": "/"}
ROLES = {"encoder": "base", "decoder": "lm"}


@pytest.mark.parametrize("case", ["bert2bert", "bert2gpt2", "roberta2roberta", "bertgen2bertgen"])
def test_each_half_is_written_under_the_names_transformers_gives_its_class(fixtures_dir, case, tmp_path):
    # transformers names a half inside EncoderDecoderModel as its class alone, behind "encoder"/"decoder":
    # its own fixture files, with that scope cut off, are the reference in every format.
    folder = read_model_folder(fixtures_dir / case)
    for fmt in case_formats(case):
        with open_checkpoint(fixtures_dir / case, fmt) as reader:
            reference = reader.names()
        for role, kind in ROLES.items():
            half = {k[len(role) + 1:]: v for k, v in folder.state.items() if k.startswith(role + ".")}
            out = tmp_path / f"{fmt}-{role}"
            write_component_folder(out, half, getattr(folder.config, role), kind, "BertModel", fmt)
            with open_checkpoint(out, fmt) as reader:
                written = sorted(reader.names())
            prefix = role + SEPARATOR[fmt]
            assert written == sorted(n[len(prefix):] for n in reference if n.startswith(prefix)), (fmt, role)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("model_type,kind", [("bert", "base"), ("roberta", "lm"), ("gpt2", "lm"), ("gpt2", "base")])
def test_a_written_folder_reads_back_whole(tmp_path, fmt, model_type, kind):
    rng = np.random.default_rng(3)
    decoder = kind == "lm"
    config = arch_config(model_type, rng, is_decoder=decoder, add_cross_attention=decoder)
    spec = architecture_spec(config, kind)
    state = {p.name: rng.standard_normal(p.shape).astype(np.float32) for p in spec}
    files = write_component_folder(tmp_path / "m", state, config, kind, "SomeClass", fmt, shard_size=2000)
    assert len(files) > 2  # sharded
    with open(tmp_path / "m" / CONFIG_NAME) as f:
        saved = json.load(f)
    assert saved["architectures"] == ["SomeClass"] and saved["model_type"] == model_type
    got = read_component_folder(tmp_path / "m", model_type, kind, "SomeClass")
    assert got.drawn == [] and got.config.to_dict() == {**config.to_dict(), "architectures": ["SomeClass"]}
    assert sorted(got.state) == sorted(state)
    for name, array in state.items():
        assert np.array_equal(got.state[name], array), name


def test_a_decoder_class_from_an_encoders_folder_draws_and_names_what_is_missing(tmp_path, caplog):
    config = arch_config("bert", np.random.default_rng(5))
    encoder = init_weights(config, seed=7, role="encoder")
    write_component_folder(tmp_path, encoder, config, "base", "BertModel", "safetensors")
    with caplog.at_level(logging.WARNING, logger="encdec"):
        got = read_component_folder(tmp_path, "bert", "lm", "BertLMHeadModel", is_decoder=True,
                                    add_cross_attention=True)
    assert got.config.is_decoder and got.config.add_cross_attention
    # The encoder's tensors, under the decoder class's prefix; the pooler has no place in it.
    for name, array in encoder.items():
        if not name.startswith("pooler."):
            assert np.array_equal(got.state["bert." + name], array), name
    assert any(name.startswith("pooler.") for name, _ in got.ignored)
    expected = sorted(n for n in got.state if ".crossattention." in n or n.startswith("cls."))
    assert sorted(got.drawn) == expected and len(expected) > 4
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert all(name in logged for name in expected)

    # Without is_decoder the class still has no pooler (transformers builds its body without one).
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="encdec"):
        got = read_component_folder(tmp_path, "bert", "lm", "BertLMHeadModel")
    assert not any("pooler" in name for name in got.state)
    assert "is_decoder=False" in caplog.text


def test_a_bare_gpt2_reads_the_body_of_an_lm_heads_folder(tmp_path):
    config = arch_config("gpt2", np.random.default_rng(6))
    state = init_weights(config, seed=2, role="decoder")
    write_component_folder(tmp_path, state, config, "lm", "GPT2LMHeadModel", "flax")
    got = read_component_folder(tmp_path, "gpt2", "base", "GPT2Model")
    assert got.drawn == []
    assert sorted(got.state) == sorted(n[len("transformer."):] for n in state)
    assert np.array_equal(got.state["wte.weight"], state["transformer.wte.weight"])


def test_bad_folders_are_refused_naming_the_file(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=rf"{empty / CONFIG_NAME}.*file not found; expected"):
        read_component_folder(empty, "bert", "base", "BertModel")

    config = arch_config("gpt2", np.random.default_rng(1))
    gpt2 = tmp_path / "gpt2"
    write_component_folder(gpt2, init_weights(config, role="decoder"), config, "lm", "GPT2LMHeadModel", "safetensors")
    with pytest.raises(ConfigError, match=rf"{gpt2 / CONFIG_NAME}: model_type 'gpt2' cannot be loaded into "
                                          r"BertModel; expected model_type 'bert'"):
        read_component_folder(gpt2, "bert", "base", "BertModel")

    os.remove(gpt2 / "model.safetensors")
    with pytest.raises(CheckpointError, match=rf"{gpt2}: no weights found"):
        read_component_folder(gpt2, "gpt2", "lm", "GPT2LMHeadModel")


def test_a_failed_save_leaves_the_previous_folder_whole(tmp_path, monkeypatch):
    config = arch_config("bert", np.random.default_rng(2))
    state = init_weights(config, role="encoder")
    write_component_folder(tmp_path / "m", state, config, "base", "BertModel", "safetensors")
    before = {n: (tmp_path / "m" / n).read_bytes() for n in os.listdir(tmp_path / "m")}
    bad = dict(state, **{"pooler.dense.bias": np.zeros(3, np.float32)})
    with pytest.raises(CheckpointError, match="pooler.dense.bias"):
        write_component_folder(tmp_path / "m", bad, config, "base", "BertModel", "pt")

    def fails_after_writing(*args, **kwargs):
        convert_save_state(*args, **kwargs)
        raise OSError("No space left on device")

    convert_save_state = convert.save_state
    monkeypatch.setattr(convert, "save_state", fails_after_writing)
    with pytest.raises(OSError, match="No space left"):
        write_component_folder(tmp_path / "m", state, config, "base", "BertModel", "pt")
    assert {n: (tmp_path / "m" / n).read_bytes() for n in os.listdir(tmp_path / "m")} == before
    assert os.listdir(tmp_path) == ["m"]


def test_class_component_finds_the_architecture_among_the_bases():
    got = class_component(["MyEncoder", "TFRobertaModel", "TFBertModel", "Model"], "TF")
    assert tuple(got) == ("roberta", "base", "TFRobertaModel")
    with pytest.raises(ConfigError, match="MyModel is none of the architecture classes"):
        class_component(["MyModel", "object"], "")
