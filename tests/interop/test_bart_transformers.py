"""BART's decoder with transformers 5 as the reference: its BartConfig defaults, a bert2bart that encdec
saves loading in transformers and giving the golden logits, BartForCausalLM saved alone both ways, and a
BartForConditionalGeneration checkpoint joined as the decoder (its `model.decoder.*` tensors taken, the
encoder half and `final_logits_bias` left out and named)."""

from __future__ import annotations

import logging
import pathlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from encdec.config import BartConfig  # noqa: E402
from encdec.pt import BartForCausalLM, EncoderDecoderModel  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "hf"
ATOL = 1e-5


def _golden(case: str) -> dict:
    with np.load(FIXTURES / case / "golden.npz") as data:
        return {k: data[k] for k in data.files}


def _quiet() -> None:
    transformers.logging.set_verbosity_error()


def test_bart_config_defaults_are_transformers():
    reference = transformers.BartConfig()
    ours = BartConfig()
    # transformers 5 keeps no default for the generic flags (add_cross_attention, ...): those are 4.x's.
    compared = [key for key in BartConfig.defaults if hasattr(reference, key)]
    assert {"d_model", "decoder_layers", "pad_token_id", "bos_token_id", "eos_token_id", "scale_embedding",
            "activation_function", "max_position_embeddings", "init_std"} <= set(compared)
    for key in compared:
        assert getattr(ours, key) == getattr(reference, key), key
    assert ours.hidden_size == reference.hidden_size == reference.d_model
    assert ours.num_hidden_layers == reference.decoder_layers


@pytest.mark.parametrize("case", ["bert2bart", "bert2bart_proj"])
def test_transformers_loads_what_encdec_saves(tmp_path, case):
    _quiet()
    g = _golden(case)
    EncoderDecoderModel.from_pretrained(FIXTURES / case).save_pretrained(tmp_path)
    hf, info = transformers.EncoderDecoderModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not any(info.get(k) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    with torch.no_grad():
        out = hf.eval()(input_ids=torch.tensor(g["input_ids"]), attention_mask=torch.tensor(g["attention_mask"]),
                        decoder_input_ids=torch.tensor(g["decoder_input_ids"]))
    np.testing.assert_allclose(out.logits.numpy(), g["logits"], atol=ATOL, rtol=0)


def _tiny_bart(**overrides):
    return transformers.BartConfig(
        vocab_size=40, d_model=16, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
        decoder_attention_heads=4, encoder_ffn_dim=20, decoder_ffn_dim=24, max_position_embeddings=32,
        scale_embedding=True, **overrides)


def test_bart_for_causal_lm_alone_both_ways(tmp_path):
    _quiet()
    torch.manual_seed(0)
    hf = transformers.BartForCausalLM(_tiny_bart(is_decoder=True, is_encoder_decoder=False)).eval()
    hf.save_pretrained(tmp_path / "hf")
    ours = BartForCausalLM.from_pretrained(tmp_path / "hf")
    ids = torch.tensor([[0, 5, 9, 33, 7, 2]])
    with torch.no_grad():
        expected = hf(input_ids=ids).logits.numpy()
        got = ours(ids).logits.numpy()
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=0)
    ours.save_pretrained(tmp_path / "ours")
    again, info = transformers.BartForCausalLM.from_pretrained(tmp_path / "ours", output_loading_info=True)
    assert not any(info.get(k) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    with torch.no_grad():
        np.testing.assert_allclose(again.eval()(input_ids=ids).logits.numpy(), expected, atol=ATOL, rtol=0)


def test_a_bart_for_conditional_generation_joins_as_the_decoder(tmp_path, caplog):
    _quiet()
    torch.manual_seed(0)
    bert = transformers.BertModel(transformers.BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=20,
        max_position_embeddings=32))
    bert.save_pretrained(tmp_path / "bert")
    bart = transformers.BartForConditionalGeneration(_tiny_bart()).eval()
    with torch.no_grad():
        bart.final_logits_bias.normal_()  # a value of its own: left out all the same
    bart.save_pretrained(tmp_path / "bart")
    with caplog.at_level(logging.INFO, logger="encdec"):
        model = EncoderDecoderModel.from_encoder_decoder_pretrained(tmp_path / "bert", tmp_path / "bart")
    state = model.canonical_state()
    reference = {k: v.detach().numpy() for k, v in bart.state_dict().items()}
    taken = [k for k in reference if k.startswith("model.decoder.")]
    assert len(taken) > 20
    for name in taken:
        np.testing.assert_array_equal(state["decoder." + name], reference[name], err_msg=name)
    # The token table is the checkpoint's shared one (transformers 5 stores it as model.shared.weight).
    np.testing.assert_array_equal(state["decoder.model.decoder.embed_tokens.weight"], reference["model.shared.weight"])
    text = caplog.text
    assert "final_logits_bias" in text and "model.encoder.layers.0.fc1.weight" in text
    # The checkpoint holds every decoder parameter (its cross-attention too): nothing of the decoder is drawn.
    assert "were newly initialised" not in text or "decoder." not in text.split("were newly initialised")[1]
    # transformers joins the same two folders into the same model, but for the token table: transformers 5
    # does not map the file's model.shared.weight to BartForCausalLM's table and draws it (and the LM head tied
    # to it) at random; given the checkpoint's table, it computes what encdec computes.
    hf = transformers.EncoderDecoderModel.from_encoder_decoder_pretrained(tmp_path / "bert", tmp_path / "bart").eval()
    with torch.no_grad():
        for param in (hf.decoder.model.decoder.embed_tokens.weight, hf.decoder.lm_head.weight):
            param.copy_(bart.model.shared.weight)
    ids, start = torch.tensor([[4, 8, 15, 16, 23]]), torch.tensor([[2, 7, 9]])
    with torch.no_grad():
        expected = hf(input_ids=ids, decoder_input_ids=start).logits.numpy()
        got = model(input_ids=ids, decoder_input_ids=start).logits.numpy()
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=0)


CONVERSIONS = [(case, src, dst) for case in ("bert2bart", "bert2bart_proj") for src in ("safetensors", "pt", "flax")
               for dst in ("safetensors", "pt") if src != dst]


@pytest.mark.parametrize("case,src,dst", CONVERSIONS, ids=[f"{c}-{s}-to-{d}" for c, s, d in CONVERSIONS])
def test_transformers_loads_a_converted_checkpoint(tmp_path, case, src, dst):
    """`encdec convert` output: transformers 5 loads it completely and gives the golden logits; a .bin keeps the
    tied LM head sharing the token table's storage, as transformers' own .bin does."""
    from encdec.weights import convert_checkpoint

    _quiet()
    files = {"safetensors": "model.safetensors", "pt": "pytorch_model.bin", "flax": "flax_model.msgpack"}
    source = tmp_path / "src"
    source.mkdir()
    for name in ("config.json", "generation_config.json", files[src]):
        (source / name).write_bytes((FIXTURES / case / name).read_bytes())
    convert_checkpoint(source, tmp_path / "out", dst, progress=False)
    hf, info = transformers.EncoderDecoderModel.from_pretrained(tmp_path / "out", output_loading_info=True)
    assert not any(info.get(k) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    g = _golden(case)
    with torch.no_grad():
        out = hf.eval()(input_ids=torch.tensor(g["input_ids"]), attention_mask=torch.tensor(g["attention_mask"]),
                        decoder_input_ids=torch.tensor(g["decoder_input_ids"]))
    np.testing.assert_allclose(out.logits.numpy(), g["logits"], atol=ATOL, rtol=0)
    if dst == "pt":
        ours = torch.load(tmp_path / "out" / files["pt"], weights_only=True)
        theirs = torch.load(FIXTURES / case / files["pt"], weights_only=True)
        assert sorted(ours) == sorted(theirs)
        head, table = "decoder.lm_head.weight", "decoder.model.decoder.embed_tokens.weight"
        assert ours[head].untyped_storage().data_ptr() == ours[table].untyped_storage().data_ptr()
