"""The Linen modules: their params are exactly the spec's Flax paths and shapes (so transformers'
flax_model.msgpack loads as is), the fixed-size cache decodes as the full forward does, attention
weights and bfloat16 computation agree with transformers' PyTorch model."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import FIXTURES, golden
from encdec.conformance import tolerances
from flax_testlib import FAST_COMPILE, assert_close, assert_same_ids, hf_model
from flax_testlib import torch_on_one_thread  # noqa: F401  (autouse)

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

from encdec.config import BertConfig, BertGenerationConfig, EncoderDecoderConfig, GPT2Config, RobertaConfig  # noqa: E402
from encdec.flax import FlaxEncoderDecoderModel  # noqa: E402
from encdec.weights.names import model_spec  # noqa: E402


def _arch(cls, hidden=16, heads=2, **kw):
    if cls is GPT2Config:
        return GPT2Config(vocab_size=30, n_embd=hidden, n_head=heads, n_layer=2, n_positions=24, **kw)
    return cls(vocab_size=30, hidden_size=hidden, num_attention_heads=heads, num_hidden_layers=2,
               intermediate_size=20, max_position_embeddings=24, **kw)


CONFIGS = {
    "bert2bert_untied_head": (_arch(BertConfig), _arch(BertConfig, tie_word_embeddings=False), {}),
    "roberta2gpt2_proj": (_arch(RobertaConfig), _arch(GPT2Config, hidden=12, heads=3), {}),
    "gpt2_untied_head": (_arch(BertConfig), _arch(GPT2Config, tie_word_embeddings=False), {}),
    "bertgen2bertgen_untied": (_arch(BertGenerationConfig), _arch(BertGenerationConfig, tie_word_embeddings=False), {}),
    "roberta2roberta_tied": (_arch(RobertaConfig), _arch(RobertaConfig), dict(tie_encoder_decoder=True)),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_module_params_are_the_spec_flax_paths(name):
    enc, dec, kwargs = CONFIGS[name]
    config = EncoderDecoderConfig.from_encoder_decoder_configs(enc, dec, decoder_start_token_id=2, pad_token_id=1,
                                                               **kwargs)
    model = FlaxEncoderDecoderModel(config)
    ids = jnp.ones((1, 3), jnp.int32)
    shapes = jax.eval_shape(
        lambda: model.module.init(jax.random.key(0), ids, ids, None, None, ids, None, None)
    )["params"]
    got = {"/".join(k.key for k in path): tuple(v.shape) for path, v in jax.tree_util.tree_leaves_with_path(shapes)}
    spec = model_spec(config)
    expected = {p.flax_path: p.flax_shape for p in spec}
    # tie_encoder_decoder: each side's body reads the stored tensors of the other at its own paths
    # (the paths the same model has untied).
    if config.tie_encoder_decoder:
        untied = config.copy()
        untied.tie_encoder_decoder = False
        untied_spec = model_spec(untied)
        for t in spec.tied:
            if t.name in untied_spec.by_name:
                expected[untied_spec.by_name[t.name].flax_path] = spec.by_name[t.source].flax_shape
    assert got == expected


def _incremental_logits(model, g, prompt_length):
    ids, mask, dids = g["input_ids"], g["attention_mask"], g["decoder_input_ids"]
    encoded = model.encode(ids, mask)
    cache = model.init_cache(len(ids), dids.shape[1], encoded)
    out = model.decode(dids[:, :prompt_length], encoded, mask, past_key_values=cache)
    logits = [out.logits]
    for t in range(prompt_length, dids.shape[1]):
        out = model.decode(dids[:, t:t + 1], encoded, mask, past_key_values=out.past_key_values)
        logits.append(out.logits)
    return np.concatenate([np.asarray(x) for x in logits], axis=1), out.past_key_values


def test_generation_from_a_decoder_prompt():
    torch = pytest.importorskip("torch")
    model = FlaxEncoderDecoderModel.from_pretrained(FIXTURES / "roberta2roberta", fmt="safetensors",
                                                    compiler_options=FAST_COMPILE)
    g = golden("roberta2roberta")
    hf = hf_model(model.config, model.canonical_state())
    prompt = np.array([[0, 17, 23], [0, 1, 40], [0, 5, 1]])  # pad (1) inside: RoBERTa positions skip it
    options = dict(max_length=10, num_beams=2, decoder_start_token_id=0, pad_token_id=1, eos_token_id=2)
    got = model.generate(g["input_ids"], g["attention_mask"], decoder_input_ids=prompt, **options).sequences
    with torch.no_grad():
        ref = hf.generate(torch.tensor(g["input_ids"]), attention_mask=torch.tensor(g["attention_mask"]),
                          decoder_input_ids=torch.tensor(prompt), **options)
    assert_same_ids("roberta prompt", got, ref.numpy())


def test_attention_weights_match_transformers():
    torch = pytest.importorskip("torch")
    model = FlaxEncoderDecoderModel.from_pretrained(FIXTURES / "bert2gpt2", fmt="safetensors",
                                                    compiler_options=FAST_COMPILE)
    g = golden("bert2gpt2")
    got = model(g["input_ids"], g["attention_mask"], decoder_input_ids=g["decoder_input_ids"], output_attentions=True)
    hf = hf_model(model.config, model.canonical_state())
    hf.config.encoder._attn_implementation = hf.config.decoder._attn_implementation = "eager"
    with torch.no_grad():
        ref = hf(input_ids=torch.tensor(g["input_ids"]), attention_mask=torch.tensor(g["attention_mask"]),
                 decoder_input_ids=torch.tensor(g["decoder_input_ids"]), output_attentions=True)
    for name in ("encoder_attentions", "decoder_attentions", "cross_attentions"):
        ours, theirs = getattr(got, name), getattr(ref, name)
        assert len(ours) == len(theirs) == 2
        for i, (a, b) in enumerate(zip(ours, theirs)):
            assert_close(f"{name}[{i}]", a, b.numpy())
    # Padded source tokens get no attention; every row sums to 1.
    cross = np.asarray(got.cross_attentions[0])  # [B, H, T, S]
    assert np.all(cross[2, :, :, 5:] == 0.0)
    np.testing.assert_allclose(cross.sum(-1), 1.0, rtol=1e-6)


def test_bfloat16_computation():
    g = golden("bert2bert")
    model = FlaxEncoderDecoderModel.from_pretrained(FIXTURES / "bert2bert", fmt="safetensors", dtype=jnp.bfloat16,
                                                    compiler_options=FAST_COMPILE)
    assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(model.params))  # params keep their dtype
    out = model(g["input_ids"], g["attention_mask"], decoder_input_ids=g["decoder_input_ids"])
    assert out.logits.dtype == jnp.bfloat16
    logits = np.asarray(out.logits, np.float32)
    reference = g["logits"]
    top1 = float(np.mean(logits.argmax(-1) == reference.argmax(-1)))
    p = jax.nn.softmax(jnp.asarray(reference), -1)
    kl = float(jnp.mean(jnp.sum(p * (jax.nn.log_softmax(jnp.asarray(reference), -1)
                                     - jax.nn.log_softmax(jnp.asarray(logits), -1)), -1)))
    assert top1 >= tolerances.BF16_TOP1_MIN, top1
    assert kl <= tolerances.BF16_KL_MAX, kl
    loss = model(g["input_ids"], g["attention_mask"], labels=g["labels"]).loss
    assert loss.dtype == jnp.float32  # the loss is computed in float32
    assert abs(float(loss) - float(g["loss"])) / float(g["loss"]) <= tolerances.BF16_LOSS_REL
    got = model.generate(g["input_ids"], g["attention_mask"], max_length=12).sequences
    assert_same_ids("bf16 greedy", got, g["greedy"])


def test_generation_scores_match_transformers():
    torch = pytest.importorskip("torch")
    model = FlaxEncoderDecoderModel.from_pretrained(FIXTURES / "bert2bert_proj", fmt="safetensors",
                                                    compiler_options=FAST_COMPILE)
    g = golden("bert2bert_proj")
    hf = hf_model(model.config, model.canonical_state())
    for options in (dict(max_length=8, num_beams=1, repetition_penalty=1.3),
                    dict(max_length=8, num_beams=3, num_return_sequences=2, length_penalty=1.5)):
        options = dict(options, return_dict_in_generate=True, output_scores=True, eos_token_id=39)
        got = model.generate(g["input_ids"], g["attention_mask"], **options)
        with torch.no_grad():
            ref = hf.generate(torch.tensor(g["input_ids"]), attention_mask=torch.tensor(g["attention_mask"]),
                              **options)
        assert_same_ids(f"sequences {options}", got.sequences, ref.sequences.numpy())
        assert len(got.scores) == len(ref.scores)
        for step, (a, b) in enumerate(zip(got.scores, ref.scores)):
            a, b = np.asarray(a), b.numpy()
            assert np.array_equal(np.isinf(a), np.isinf(b)), step
            assert_close(f"scores of step {step}", np.where(np.isinf(a), 0, a), np.where(np.isinf(b), 0, b))
        if options["num_beams"] > 1:
            assert_close("sequences_scores", got.sequences_scores, ref.sequences_scores.numpy())
            np.testing.assert_array_equal(np.asarray(got.beam_indices), ref.beam_indices.numpy())
