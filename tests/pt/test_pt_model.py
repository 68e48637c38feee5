"""The module tree: names, ties, construction, joining pretrained parts, resizing, outputs."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from encdec.config import BertConfig, GPT2Config
from encdec.pt import (
    BertGenerationDecoder,
    BertGenerationEncoder,
    BertLMHeadModel,
    BertModel,
    EncoderDecoderModel,
    GPT2LMHeadModel,
    RobertaForCausalLM,
    RobertaModel,
    shift_tokens_right,
)
from encdec.weights.names import init_weights, model_spec
from pt_helpers import (  # noqa: F401
    PAIRS,
    joined_config,
    one_torch_thread,
    our_model,
    quiet_transformers,
    random_batch,
    random_state,
)

VARIANTS = [(pair, {}) for pair in PAIRS] + [
    ("bert2bert", {"proj": True}),
    ("bert2gpt2", {"proj": True}),
    ("bert2bert", {"tie": True}),
    ("roberta2roberta", {"tie": True}),
    ("bertgen2bertgen", {"tie": True}),
]


def untied_lm_head(config):
    config.decoder.tie_word_embeddings = False
    return config


@pytest.mark.parametrize("pair,options", VARIANTS + [("bert2bert", {"untied": True}), ("bert2gpt2", {"untied": True})])
def test_state_dict_names_and_ties_are_the_spec(pair, options):
    config = joined_config(pair, 0, proj=options.get("proj", False), tie=options.get("tie", False))
    if options.get("untied"):
        config = untied_lm_head(config)
    model = EncoderDecoderModel(config=config)
    spec = model_spec(config)
    state = model.state_dict()
    assert sorted(state) == sorted(spec.state_dict_names())
    for p in spec:
        assert tuple(state[p.name].shape) == p.shape, p.name
    params = dict(model.named_parameters(remove_duplicate=False))
    for tied in spec.tied:
        assert params[tied.name] is params[tied.source], tied.name
    # stored parameters are distinct tensors
    assert len({id(params[p.name]) for p in spec}) == len(spec)
    assert not any(p.is_meta for p in model.parameters())


def test_joining_modules_keeps_their_weights():
    enc_cfg = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=20, max_position_embeddings=20)
    dec_cfg = GPT2Config(vocab_size=50, n_embd=24, n_layer=1, n_head=2, n_positions=20,
                         is_decoder=True, add_cross_attention=True)
    torch.manual_seed(0)
    encoder, decoder = BertModel(enc_cfg), GPT2LMHeadModel(dec_cfg)
    before = encoder.embeddings.word_embeddings.weight.detach().clone()
    model = EncoderDecoderModel(encoder=encoder, decoder=decoder)
    assert model.get_encoder() is encoder and model.get_decoder() is decoder
    assert torch.equal(model.encoder.embeddings.word_embeddings.weight, before)
    assert model.enc_to_dec_proj is not None  # 16 -> 24
    assert encoder.config is model.config.encoder and decoder.config is model.config.decoder
    assert model.get_input_embeddings() is encoder.embeddings.word_embeddings
    assert model.get_output_embeddings() is decoder.lm_head
    model.config.pad_token_id, model.config.decoder_start_token_id = 0, 1
    out = model(input_ids=torch.tensor([[3, 4, 5]]), labels=torch.tensor([[6, 7]]))
    assert out.logits.shape == (1, 2, 50) and torch.isfinite(out.loss)


def test_a_decoder_without_cross_attention_is_refused():
    cfg = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=20, is_decoder=True)
    from encdec.errors import ConfigError

    with pytest.raises(ConfigError, match="add_cross_attention"):
        EncoderDecoderModel(encoder=BertModel(cfg.__class__(**{**cfg.to_dict(), "is_decoder": False})),
                            decoder=BertLMHeadModel(cfg))


@pytest.mark.parametrize("dec_type", ["bert", "gpt2", "roberta", "bert-generation"])
def test_from_encoder_decoder_pretrained_matches_transformers(tmp_path, caplog, quiet_transformers, dec_type):
    import transformers

    hf_classes = {
        "bert": (transformers.BertModel, transformers.BertConfig),
        "roberta": (transformers.RobertaForCausalLM, transformers.RobertaConfig),
        "gpt2": (transformers.GPT2LMHeadModel, transformers.GPT2Config),
        "bert-generation": (transformers.BertGenerationEncoder, transformers.BertGenerationConfig),
    }
    enc_type = "bert-generation" if dec_type == "bert-generation" else "bert"
    rng = np.random.default_rng(0)
    from pt_helpers import arch_config

    for role, model_type in (("enc", enc_type), ("dec", dec_type)):
        cfg = arch_config(model_type, rng, hidden=16)
        cls, hf_cfg_cls = hf_classes[model_type]
        torch.manual_seed(1)
        cls(hf_cfg_cls.from_dict(cfg.to_dict())).save_pretrained(tmp_path / role)
    with caplog.at_level(logging.WARNING, logger="encdec"):
        ours = EncoderDecoderModel.from_encoder_decoder_pretrained(
            tmp_path / "enc", tmp_path / "dec", encoder_hidden_dropout_prob=0.0, pad_token_id=1,
            **({"decoder_attention_probs_dropout_prob": 0.0} if dec_type != "gpt2" else {"decoder_attn_pdrop": 0.1}),
        )
    assert ours.config.encoder.hidden_dropout_prob == 0.0
    assert ours.config.pad_token_id == 1
    assert ours.config.decoder.is_decoder and ours.config.decoder.add_cross_attention
    hf = transformers.EncoderDecoderModel.from_encoder_decoder_pretrained(tmp_path / "enc", tmp_path / "dec")
    theirs = hf.state_dict()
    from safetensors import safe_open

    stored = {}
    for role in ("encoder", "decoder"):
        folder = tmp_path / role[:3]
        with safe_open(str(folder / "model.safetensors"), "np") as f:
            stored[role] = set(f.keys())
    base = {"bert": "bert.", "roberta": "roberta.", "gpt2": "transformer.", "bert-generation": "bert."}[dec_type]

    def in_checkpoint(name):
        role, rest = name.split(".", 1)
        plain = rest[len(base):] if role == "decoder" and rest.startswith(base) else rest
        return rest in stored[role] or plain in stored[role]

    mine = ours.canonical_state()
    expected_drawn = sorted(name for name in mine if not in_checkpoint(name))
    assert any("crossattention" in name for name in expected_drawn)
    message = next(r.getMessage() for r in caplog.records if r.name == "encdec" and "newly initialised" in r.getMessage())
    assert sorted(message.split(": ", 1)[1].split(", ")) == expected_drawn
    for name in mine:
        if name not in expected_drawn:
            np.testing.assert_array_equal(mine[name], theirs[name].numpy(), err_msg=name)


@pytest.mark.parametrize("pair,tie", [("bert2bert", False), ("bert2gpt2", False), ("roberta2roberta", True),
                                      ("bertgen2bertgen", False)])
@pytest.mark.parametrize("new_size", [70, 50])
def test_resize_token_embeddings(pair, tie, new_size):
    config = joined_config(pair, 2, tie=tie)
    model = our_model(config, random_state(config, 2))
    old_vocab = config.decoder.vocab_size
    batch = random_batch(config, np.random.default_rng(1), 2, 6, 5, "none")
    keep = min(old_vocab, new_size)
    batch["decoder_input_ids"] = batch["decoder_input_ids"] % keep
    if tie:
        batch["input_ids"] = batch["input_ids"] % keep
    kwargs = dict(input_ids=batch["input_ids"], decoder_input_ids=batch["decoder_input_ids"])
    with torch.no_grad():
        before = model(**kwargs).logits
    embedding = model.resize_token_embeddings(new_size)
    assert embedding is model.decoder.get_input_embeddings() and embedding.weight.shape[0] == new_size
    assert model.config.decoder.vocab_size == new_size
    assert model.config.encoder.vocab_size == (new_size if tie else old_vocab)
    params = dict(model.named_parameters(remove_duplicate=False))
    for tied in model.spec.tied:
        assert params[tied.name] is params[tied.source]
    assert sorted(model.state_dict()) == sorted(model_spec(model.config).state_dict_names())
    with torch.no_grad():
        after = model(**kwargs).logits
    assert after.shape[-1] == new_size
    torch.testing.assert_close(after[..., :keep], before[..., :keep], rtol=0, atol=0)
    ids = model.generate(batch["input_ids"], max_length=6)
    assert int(ids.max()) < new_size


def test_outputs_as_tuples_and_by_key():
    config = joined_config("bert2bert", 0)
    model = our_model(config, random_state(config, 0))
    b = random_batch(config, np.random.default_rng(0), 2, 6, 4, "none")
    kwargs = dict(input_ids=b["input_ids"], labels=b["labels"])
    out = model(**kwargs)
    as_tuple = model(**kwargs, return_dict=False)
    assert torch.equal(as_tuple[0], out.loss) and torch.equal(as_tuple[1], out.logits)
    assert torch.equal(out["logits"], out.logits) and torch.equal(out[1], out.logits)
    assert list(out.keys())[:2] == ["loss", "logits"]
    assert out.past_key_values is out.cache and out.cache["index"] == b["labels"].shape[1]


def test_shift_tokens_right_is_transformers():
    from transformers.models.encoder_decoder.modeling_encoder_decoder import shift_tokens_right as hf_shift

    labels = torch.tensor([[5, 6, -100, -100], [7, 8, 9, 10]])
    assert torch.equal(shift_tokens_right(labels, 0, 2), hf_shift(labels, 0, 2))


def test_architecture_classes_are_exported():
    for cls in (BertModel, BertLMHeadModel, RobertaModel, RobertaForCausalLM, GPT2LMHeadModel,
                BertGenerationEncoder, BertGenerationDecoder):
        assert cls.__module__.startswith("encdec.pt.")
    import encdec

    assert encdec.EncoderDecoderModel is EncoderDecoderModel


def test_standalone_decoder_is_a_causal_lm():
    cfg = BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=20, is_decoder=True)
    torch.manual_seed(0)
    decoder = BertLMHeadModel(cfg)
    ids = torch.randint(0, 30, (2, 5))
    out = decoder(ids, labels=ids)
    expected = torch.nn.functional.cross_entropy(out.logits[:, :-1].reshape(-1, 30), ids[:, 1:].reshape(-1))
    torch.testing.assert_close(out.loss, expected)
    assert decoder.get_output_embeddings().weight is decoder.get_input_embeddings().weight


def test_from_encoder_decoder_pretrained_with_tied_halves(tmp_path, caplog, quiet_transformers):
    import transformers

    from pt_helpers import arch_config

    cfg = arch_config("bert", np.random.default_rng(3), hidden=16)
    transformers.BertModel(transformers.BertConfig.from_dict(cfg.to_dict())).save_pretrained(tmp_path / "bert")
    with caplog.at_level(logging.WARNING, logger="encdec"):
        model = EncoderDecoderModel.from_encoder_decoder_pretrained(tmp_path / "bert", tmp_path / "bert",
                                                                    tie_encoder_decoder=True)
    params = dict(model.named_parameters(remove_duplicate=False))
    assert params["decoder.bert.encoder.layer.0.attention.self.query.weight"] is \
        params["encoder.encoder.layer.0.attention.self.query.weight"]
    message = " ".join(r.getMessage() for r in caplog.records if r.name == "encdec")
    assert "decoder.bert.encoder.layer.0.crossattention.self.query.weight" in message
    assert "decoder.bert.encoder.layer.0.attention.self.query.weight" not in message


def test_joined_config_keys_are_not_taken_as_decoder_options(tmp_path):
    """`decoder_start_token_id` belongs to the joined config, though it starts with "decoder_"."""
    import json

    from encdec import EncoderDecoderModel
    from encdec.config import BertConfig
    from encdec.weights.convert import save_state
    from encdec.weights.names import encoder_spec, init_weights

    cfg = BertConfig(vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=8, max_position_embeddings=16)
    save_state(init_weights(cfg, 0, role="encoder"), encoder_spec(cfg), str(tmp_path), "safetensors")
    (tmp_path / "config.json").write_text(json.dumps(cfg.to_dict()))
    model = EncoderDecoderModel.from_encoder_decoder_pretrained(
        str(tmp_path), str(tmp_path), decoder_start_token_id=5, pad_token_id=0
    )
    assert model.config.decoder_start_token_id == 5
    assert "start_token_id" not in model.config.decoder.extra
