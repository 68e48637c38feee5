"""encdec.generation: the framework-neutral plan of generate (tokens, lengths, prompt, processors)."""

from __future__ import annotations

import numpy as np
import pytest

from encdec import generation as G
from encdec.config import BertConfig, EncoderDecoderConfig, GenerationConfig, RobertaConfig
from encdec.errors import ConfigError, InputError, NonFiniteError

SMALL = dict(vocab_size=99, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=37,
             max_position_embeddings=64)
VOCAB = 97  # the decoder's


def model_config(**kwargs):
    # The RoBERTa decoder's position table covers 64 - pad 1 - 1 = 62 tokens.
    kwargs = dict(dict(decoder_start_token_id=0, pad_token_id=1, eos_token_id=2), **kwargs)
    return EncoderDecoderConfig.from_encoder_decoder_configs(
        BertConfig(**SMALL), RobertaConfig(**dict(SMALL, vocab_size=VOCAB)), **kwargs
    )


def plan(options=None, prompt=None, batch=2, config=None, generation_config=None, model_gc=None):
    config = config or model_config()
    model_gc = model_gc or GenerationConfig.from_model_config(config)
    return G.plan_generation(config, generation_config, model_gc, options or {}, prompt, batch)


# ---------------------------------------------------------------------------- special tokens


def test_start_token_order():
    cfg = model_config(decoder_start_token_id=3, bos_token_id=4)
    bare = GenerationConfig()
    assert G.start_token_id(cfg, GenerationConfig(decoder_start_token_id=5, bos_token_id=6)) == 5
    assert G.start_token_id(cfg, GenerationConfig(bos_token_id=6)) == 3  # the model's start before any bos
    assert G.start_token_id(model_config(decoder_start_token_id=None, bos_token_id=4), GenerationConfig(bos_token_id=6)) == 6
    assert G.start_token_id(model_config(decoder_start_token_id=None, bos_token_id=4), bare) == 4
    with pytest.raises(ConfigError, match="^no decoder_start_token_id \\(nor bos_token_id\\)"):
        G.start_token_id(model_config(decoder_start_token_id=None), bare)


def test_pad_falls_back_to_the_first_eos():
    p = plan({"pad_token_id": None, "eos_token_id": [3, 2]}, model_gc=GenerationConfig(decoder_start_token_id=0)).plan
    assert (p.pad_token_id, p.eos_token_ids, p.fill_token_id) == (3, (3, 2), 3)
    p = plan(model_gc=GenerationConfig(decoder_start_token_id=0)).plan
    assert (p.pad_token_id, p.eos_token_ids, p.fill_token_id, p.beam_fill_token_id) == (None, (), 0, -1)


def test_beam_fill_treats_a_pad_of_zero_as_unset():
    # transformers fills its beam buffers with `pad_token_id or eos_token_id[0]`.
    assert plan({"pad_token_id": 0, "eos_token_id": 2}).plan.beam_fill_token_id == 2
    assert plan({"pad_token_id": 5, "eos_token_id": 2}).plan.beam_fill_token_id == 5
    assert plan({"pad_token_id": 0, "eos_token_id": 2}).plan.fill_token_id == 0


@pytest.mark.parametrize("option, name", [("decoder_start_token_id", "decoder_start_token_id"),
                                          ("pad_token_id", "pad_token_id"), ("eos_token_id", "eos_token_id"),
                                          ("forced_bos_token_id", "forced_bos_token_id"),
                                          ("forced_eos_token_id", "forced_eos_token_id")])
@pytest.mark.parametrize("value", [VOCAB, -1])
def test_special_ids_outside_the_decoder_vocabulary(option, name, value):
    with pytest.raises(ConfigError, match=rf"^{name} is {value}; expected an id in \[0, {VOCAB}\) \(the decoder's"):
        plan({option: [2, value] if option == "eos_token_id" else value})
    plan({option: VOCAB - 1})  # the last id is fine


@pytest.mark.parametrize("name", ["decoder_start_token_id", "pad_token_id", "eos_token_id"])
def test_special_ids_of_the_configs_outside_the_decoder_vocabulary(name):
    # Ids that come from the model's generation config or the model config, not from the call.
    with pytest.raises(ConfigError, match=rf"^{name} is {VOCAB + 3}; expected an id in \[0, {VOCAB}\)"):
        plan(model_gc=GenerationConfig(**dict({"decoder_start_token_id": 0}, **{name: VOCAB + 3})))
    if name == "decoder_start_token_id":  # the model config's pad is not generate's: only its generation config's
        with pytest.raises(ConfigError, match=rf"^{name} is {VOCAB + 3}; expected an id in \[0, {VOCAB}\)"):
            plan(config=model_config(**{name: VOCAB + 3}), model_gc=GenerationConfig(
                **{"decoder_start_token_id": 0, "pad_token_id": 1, name: None}))


# ---------------------------------------------------------------------------- lengths


def test_lengths_count_the_prompt():
    assert (plan().plan.max_length, plan().plan.min_length) == (21, 0)  # 20 new tokens after the start token
    prompt = np.array([[0, 5, 6], [0, 7, 8]])
    assert plan({"max_new_tokens": 5}, prompt).plan.max_length == 8
    assert plan({"max_length": 12}, prompt).plan.max_length == 12
    assert plan({"min_new_tokens": 4, "max_length": 12}, prompt).plan.min_length == 7
    assert plan({"min_length": 6}).plan.min_length == 6
    # A max_length set in the base config is explicit too.
    assert plan(generation_config=GenerationConfig(max_length=9, decoder_start_token_id=0)).plan.max_length == 9
    assert plan({"max_length": 10}).plan.cache_length == 9
    with pytest.raises(InputError, match="max_length is 3; expected more than the decoder prompt's 3 token"):
        plan({"max_length": 3}, prompt)


def test_max_length_against_the_decoder_position_table():
    assert plan({"max_length": 63}).plan.max_length == 63  # 62 positions fed, the last token is not
    with pytest.raises(InputError, match=r"^max_length 64 needs 63 decoder positions; the decoder's position table "
                                         r"covers 62, expected max_length <= 63$"):
        plan({"max_length": 64})


# ---------------------------------------------------------------------------- beams and rows


def test_rows_and_beams():
    p = plan({"num_beams": 3, "num_return_sequences": 2, "eos_token_id": [2, 3]}).plan
    assert (p.num_beams, p.rows_per_item, p.beams_to_keep, p.is_beam_search) == (3, 3, 9, True)
    p = plan({"num_beams": 2, "eos_token_id": None}, model_gc=GenerationConfig(decoder_start_token_id=0)).plan
    assert p.beams_to_keep == 4  # at least two candidates per beam
    p = plan({"do_sample": True, "num_return_sequences": 3}).plan
    assert (p.num_beams, p.rows_per_item, p.is_beam_search) == (1, 3, False)


def test_more_returned_sequences_than_beams():
    with pytest.raises(ConfigError, match=r"num_return_sequences \(4\) must be <= num_beams \(3\) in beam search"):
        plan({"num_beams": 3, "num_return_sequences": 4, "do_sample": True})
    with pytest.raises(ConfigError, match=r"num_return_sequences \(4\) must be <= num_beams \(3\)"):
        plan({"num_beams": 3, "num_return_sequences": 4})


def test_beam_runtime_options():
    s = plan({"num_beams": 2, "early_stopping": "never", "length_penalty": 2.0})
    assert (s.early_stopping_true, s.heuristic_at_max_length) == (False, True)
    s = plan({"num_beams": 2, "early_stopping": "never", "length_penalty": -1.0})
    assert (s.early_stopping_true, s.heuristic_at_max_length) == (False, False)
    s = plan({"num_beams": 2, "early_stopping": True})
    assert (s.early_stopping_true, s.heuristic_at_max_length) == (True, False)


def test_length_penalty_table():
    table = G.length_penalty_table(6, 2)
    assert table.dtype == np.float32 and table.shape == (7,)
    np.testing.assert_array_equal(table, [1, 1, 4, 9, 16, 25, 36])
    np.testing.assert_array_equal(G.length_penalty_table(4, 0.0), np.ones(5, np.float32))
    np.testing.assert_array_equal(G.length_penalty_table(5, -1.0), np.float32([1, 1, 1 / 2, 1 / 3, 1 / 4, 1 / 5]))
    s = plan({"max_length": 7, "length_penalty": 2.0})
    np.testing.assert_array_equal(s.length_penalty_table, [1, 1, 4, 9, 16, 25, 36, 49])


# ---------------------------------------------------------------------------- the decoder prompt


def test_prompt_without_decoder_input_ids():
    s = plan(batch=3)
    assert s.prompt.dtype == np.int64
    np.testing.assert_array_equal(s.prompt, [[0], [0], [0]])
    assert s.plan.prompt_length == 1


def test_start_token_goes_in_front_when_no_row_begins_with_it():
    s = plan(prompt=np.array([[5, 6], [7, 8]], np.int32))
    np.testing.assert_array_equal(s.prompt, [[0, 5, 6], [0, 7, 8]])
    assert s.prompt.dtype == np.int64 and s.plan.prompt_length == 3
    # One row beginning with it is enough for transformers to leave the prompt as it is.
    s = plan(prompt=np.array([[0, 6], [7, 8]], np.uint8))
    np.testing.assert_array_equal(s.prompt, [[0, 6], [7, 8]])


@pytest.mark.parametrize("prompt, message", [
    (np.array([5, 6]), r"^decoder_input_ids has shape \(2,\); expected \[2, prompt length\]"),
    (np.array([[5, 6]]), r"^decoder_input_ids has shape \(1, 2\); expected \[2, prompt length\] \(batch size 2"),
    (np.array([[5.0], [6.0]]), "^decoder_input_ids has dtype float64; expected integer ids$"),
    (np.array([[5], [VOCAB]]), rf"^decoder_input_ids holds id {VOCAB}; expected ids in \[0, {VOCAB}\)"),
    (np.zeros((2, 0), np.int64), "expected at least one token"),
])
def test_bad_prompts(prompt, message):
    with pytest.raises(InputError, match=message):
        plan(prompt=prompt)


# ---------------------------------------------------------------------------- options


def test_port_options_are_set_apart():
    generator = object()
    options = {"seed": 4, "generator": generator, "jit_compile": False, "token_type_ids": "t", "num_beams": 2}
    s = plan(options)
    assert s.port_options == {"seed": 4, "generator": generator, "jit_compile": False, "token_type_ids": "t"}
    assert s.config.num_beams == 2 and "seed" not in s.config.to_dict()
    assert options["seed"] == 4 and len(options) == 5  # the caller's dict is not changed
    s = G.plan_generation(model_config(), None, GenerationConfig(decoder_start_token_id=0), {"prng_key": 1}, None, 1,
                          port_options=("prng_key",))
    assert s.port_options == {"prng_key": 1}


def test_unknown_option_and_foreign_config():
    with pytest.raises(ConfigError, match="unknown generation option"):
        plan({"num_beam": 2})
    with pytest.raises(ConfigError, match="^generation_config is a dict; expected an encdec GenerationConfig$"):
        plan(generation_config={"num_beams": 2})


def test_call_config_replaces_the_models():
    model_gc = GenerationConfig(decoder_start_token_id=0, num_beams=4)
    s = plan(generation_config=GenerationConfig(decoder_start_token_id=0, num_beams=2), model_gc=model_gc)
    assert s.plan.num_beams == 2
    assert plan(model_gc=model_gc).plan.num_beams == 4
    assert model_gc.num_beams == 4


def test_output_scores_only_with_a_dict():
    assert not plan({"output_scores": True}).plan.output_scores
    p = plan({"output_scores": True, "return_dict_in_generate": True}).plan
    assert p.output_scores and p.return_dict_in_generate


# ---------------------------------------------------------------------------- processors


def names(p):
    return [spec.name for spec in p.processors]


def test_processors_in_transformers_order():
    p = plan({
        "do_sample": True, "top_p": 0.9, "top_k": 5, "temperature": 0.7, "forced_eos_token_id": 2,
        "forced_bos_token_id": 4, "min_new_tokens": 2, "bad_words_ids": [[5]], "no_repeat_ngram_size": 2,
        "repetition_penalty": 1.3,
    }).plan
    assert names(p) == ["repetition_penalty", "no_repeat_ngram", "bad_words", "min_length", "forced_bos",
                        "forced_eos", "temperature", "top_k", "top_p"]
    assert p.processor("repetition_penalty")["penalty"] == 1.3
    assert p.processor("no_repeat_ngram")["ngram_size"] == 2
    assert p.processor("min_length").as_dict() == {"min_length": 3, "eos_token_ids": (2,)}
    assert p.processor("forced_bos")["token_id"] == 4
    assert p.processor("forced_eos").as_dict() == {"max_length": 21, "eos_token_ids": (2,)}
    assert p.processor("temperature")["temperature"] == 0.7
    assert p.processor("top_k").as_dict() == {"top_k": 5, "min_tokens_to_keep": 1}
    assert p.processor("top_p").as_dict() == {"top_p": 0.9, "min_tokens_to_keep": 1}


def test_processors_that_change_nothing_are_left_out():
    p = plan({"do_sample": True, "top_k": 0, "top_p": 1.0, "temperature": 1.0, "repetition_penalty": 1.0,
              "no_repeat_ngram_size": 0, "min_length": 5, "eos_token_id": None},
             model_gc=GenerationConfig(decoder_start_token_id=0)).plan
    assert names(p) == []
    assert plan({"min_length": 5}).plan.processor("min_length") is not None  # with an eos id it runs
    assert names(plan({"top_k": 3, "top_p": 0.5, "temperature": 2.0}).plan) == []  # warpers only when sampling
    assert names(plan({"bad_words_ids": [[2]]}).plan) == []  # an eos token alone is not banned


def test_top_k_keeps_enough_tokens_for_beam_sampling():
    # Beam sampling keeps one more token than there are eos ids (2 without any).
    p = plan({"do_sample": True, "num_beams": 2, "top_k": 1, "top_p": 0.5, "eos_token_id": [2, 3]}).plan
    assert p.processor("top_k").as_dict() == {"top_k": 3, "min_tokens_to_keep": 3}
    assert p.processor("top_p")["min_tokens_to_keep"] == 3
    p = plan({"do_sample": True, "num_beams": 2, "top_k": 1, "eos_token_id": None},
             model_gc=GenerationConfig(decoder_start_token_id=0)).plan
    assert p.processor("top_k").as_dict() == {"top_k": 2, "min_tokens_to_keep": 2}
    assert plan({"do_sample": True, "top_k": 500}).plan.processor("top_k")["top_k"] == VOCAB


@pytest.mark.parametrize("option, value, message", [
    ("repetition_penalty", 0.0, "repetition_penalty must be > 0, got 0.0"),
    ("repetition_penalty", -1.5, "repetition_penalty must be > 0, got -1.5"),
    ("no_repeat_ngram_size", -1, "no_repeat_ngram_size must be a non-negative int, got -1"),
    ("no_repeat_ngram_size", 1.5, "no_repeat_ngram_size must be a non-negative int, got 1.5"),
    ("top_k", -2, "top_k must be a non-negative int, got -2"),
    ("top_k", 2.5, "top_k must be a non-negative int, got 2.5"),
    ("top_p", 1.5, r"top_p must be in \[0, 1\], got 1.5"),
    ("temperature", 0.0, "temperature must be > 0 when sampling, got 0.0"),
])
def test_bad_processor_options(option, value, message):
    # Set past GenerationConfig's own validation (attribute writes do not validate): the plan checks again.
    gc = GenerationConfig(do_sample=True)
    setattr(gc, option, value)
    with pytest.raises(ConfigError, match=f"^{message}$"):
        G.logits_processors(gc, [2], 21, 0, VOCAB)
    with pytest.raises(ConfigError, match=option):
        plan({option: value, "do_sample": True})


def test_bad_words_arrays():
    single, groups = G.bad_words_arrays([[5], [2], [6, 7], [8, 9, 10], [6, 7], [11, 7]], [2], 20)
    expected = np.zeros(20, bool)
    expected[5] = True  # [2] is the eos id alone: not banned
    np.testing.assert_array_equal(single, expected)
    assert len(groups) == 2  # prefix lengths 1 and 2, ascending; the repeated [6, 7] counts once
    np.testing.assert_array_equal(groups[0][0], [[6], [11]])
    np.testing.assert_array_equal(groups[0][1], [7, 7])
    np.testing.assert_array_equal(groups[1][0], [[8, 9]])
    np.testing.assert_array_equal(groups[1][1], [10])
    assert groups[0][0].dtype == np.int32 and groups[0][1].dtype == np.int32
    assert G.bad_words_arrays(None, [2], 20) == (None, ())
    assert G.bad_words_arrays([[2]], [2], 20) == (None, ())
    single, groups = G.bad_words_arrays([[3, 4]], [], 20)
    assert single is None and len(groups) == 1


@pytest.mark.parametrize("bad", [[], [[]], [5], [[5, 99]], [[-1]], "5", [[True]]])
def test_malformed_bad_words(bad):
    with pytest.raises(ConfigError, match="^bad_words_ids is .*; expected a non-empty list of non-empty lists"):
        G.bad_words_arrays(bad, [2], 20)
    with pytest.raises(ConfigError, match="bad_words_ids"):
        plan({"bad_words_ids": bad if bad != [[5, 99]] else [[5, VOCAB]]})


def test_processor_arrays():
    p = plan({"do_sample": True, "temperature": 0.5, "top_k": 4, "bad_words_ids": [[5], [6, 7]],
              "forced_eos_token_id": 3, "eos_token_id": [2, 3]}).plan
    t = p.processor("temperature").arrays()["temperature"]
    assert t.dtype == np.float32 and t == np.float32(0.5)
    k = p.processor("top_k").arrays()
    assert k["top_k"].dtype == np.int32 and int(k["top_k"]) == 4
    eos = p.processor("forced_eos").arrays()["eos_token_ids"]
    assert eos.dtype == np.int32 and eos.tolist() == [3]
    assert p.processor("min_length") is None
    bad = p.processor("bad_words").arrays()
    assert bad["single"].shape == (VOCAB,) and bad["single"].nonzero()[0].tolist() == [5]
    assert [g[0].tolist() for g in bad["groups"]] == [[[6]]]


# ---------------------------------------------------------------------------- the plan as a key


def test_plan_is_a_hashable_key():
    a, b = plan({"num_beams": 2, "bad_words_ids": [[5]]}), plan({"num_beams": 2, "bad_words_ids": [[5]]})
    cache = {a.plan: "compiled"}
    assert cache[b.plan] == "compiled"
    assert hash(a.plan) == hash(b.plan)
    # What changes the ops changes the key; the batch size and the beam runtime options do not.
    assert plan({"num_beams": 2, "bad_words_ids": [[6]]}).plan != a.plan
    assert plan({"num_beams": 2, "bad_words_ids": [[5]]}, batch=5).plan == a.plan
    assert plan({"num_beams": 2, "bad_words_ids": [[5]], "length_penalty": 3.0}).plan == a.plan
    assert plan({"num_beams": 2, "bad_words_ids": [[5]], "max_length": 30}).plan != a.plan


# ---------------------------------------------------------------------------- what the ports share around their loops


def test_returned_beams_picks_the_best_per_item_and_crops_to_the_longest():
    # 2 items x 3 hypotheses (best first) of max_length 5 after a 1-token prompt; beam indices -1 past the end.
    sequences = np.arange(2 * 3 * 5).reshape(2, 3, 5)
    scores = np.array([[-1.0, -2.0, -3.0], [-4.0, -5.0, -6.0]], np.float32)
    steps = np.array([[2, 1, 4], [1, 3, 4]])  # generated tokens of each hypothesis
    beam_indices = np.where(np.arange(4)[None, None, :] < steps[..., None], 7, -1)
    ids, best, indices = G.returned_beams(2, 1, sequences, scores, beam_indices)
    # The longest of the returned hypotheses (items' first two) has 3 tokens: 1 + 3 columns.
    np.testing.assert_array_equal(ids, [[0, 1, 2, 3], [5, 6, 7, 8], [15, 16, 17, 18], [20, 21, 22, 23]])
    np.testing.assert_array_equal(best, [-1.0, -2.0, -4.0, -5.0])
    np.testing.assert_array_equal(indices, [[7, 7, -1], [7, -1, -1], [7, -1, -1], [7, 7, 7]])
    ids, _, indices = G.returned_beams(1, 1, sequences, scores, beam_indices, crop=False)
    assert ids.shape == (2, 5) and indices.shape == (2, 4)


def test_static_plan_keys_on_what_fixes_shapes_and_ops_only():
    base = dict(max_length=8, num_beams=2, no_repeat_ngram_size=2, repetition_penalty=1.5)
    key = G.static_plan(plan(base).plan, 2, 5, False)
    # Values that are inputs of the loop change nothing.
    for change in (dict(eos_token_id=5), dict(min_length=4), dict(repetition_penalty=2.0), dict(length_penalty=2.0)):
        assert G.static_plan(plan(dict(base, **change)).plan, 2, 5, False) == key, change
    # Shapes and the processors' structure do.
    assert key.processors == (("repetition_penalty", None), ("no_repeat_ngram", 2))
    for change in (dict(no_repeat_ngram_size=3), dict(max_length=9), dict(eos_token_id=[2, 5]),
                   dict(bad_words_ids=[[7, 8]]), dict(num_beams=3)):
        assert G.static_plan(plan(dict(base, **change)).plan, 2, 5, False) != key, change
    assert G.static_plan(plan(base).plan, 3, 5, False) != key


def test_loop_options_make_absent_processors_no_ops():
    opts = G.loop_options(plan(dict(max_length=8, eos_token_id=None)), VOCAB)
    assert opts["eos_token_ids"].tolist() == [VOCAB]  # an id no token has
    assert (opts["temperature"], opts["top_k"], opts["top_p"], opts["repetition_penalty"]) == (1.0, VOCAB, 1.0, 1.0)
    opts = G.loop_options(plan(dict(max_length=8, do_sample=True, top_k=5, temperature=0.5, length_penalty=2.0)), VOCAB)
    assert (opts["temperature"], opts["top_k"], opts["eos_token_ids"].tolist()) == (0.5, 5, [2])
    assert opts["length_penalty_table"][3] == np.float32(9.0)


def test_generate_outputs_packs_results_as_asked():
    classes = (lambda **f: ("greedy", f), lambda **f: ("beam", f))
    greedy = plan(dict(max_length=8, return_dict_in_generate=True))
    assert G.generate_outputs(plan(dict(max_length=8)).plan, greedy.config, classes, "ids") == "ids"
    assert G.generate_outputs(greedy.plan, greedy.config, classes, "ids", "s") == ("greedy", dict(sequences="ids",
                                                                                                 scores="s"))
    beam = plan(dict(max_length=8, num_beams=2, return_dict_in_generate=True))
    out = G.generate_outputs(beam.plan, beam.config, classes, "ids", None, "best", "bi")
    assert out == ("beam", dict(sequences="ids", sequences_scores=None, scores=None, beam_indices="bi"))
    scored = plan(dict(max_length=8, num_beams=2, return_dict_in_generate=True, output_scores=True))
    out = G.generate_outputs(scored.plan, scored.config, classes, "ids", "s", "best", "bi")
    assert out[1]["sequences_scores"] == "best"


def test_build_processors_calls_each_class_with_its_options_in_order():
    setup = plan(dict(max_length=8, repetition_penalty=1.5, bad_words_ids=[[7], [8, 9]], do_sample=True, top_k=4))
    made = G.build_processors(setup.plan.processors, lambda name: (lambda **kw: (name, kw)))
    # No min_length processor: min_length 0 bans nothing.
    assert [name for name, _ in made] == ["RepetitionPenaltyLogitsProcessor", "NoBadWordsLogitsProcessor",
                                          "TopKLogitsWarper"]
    assert made[0][1] == {"penalty": 1.5} and made[2][1] == {"top_k": 4, "min_tokens_to_keep": 1}
    bad = made[1][1]
    assert bad["single"].nonzero()[0].tolist() == [7]
    np.testing.assert_array_equal(bad["groups"][0][0], [[8]])
    assert G.apply_processors([lambda s, n, x: x + n, lambda s, n, x: x * 2], None, 3, 1) == 8


def test_loop_processors_run_min_length_and_the_warpers_always_in_the_plans_order():
    def made(options):
        setup = plan(dict(max_length=8, **options))
        static = G.static_plan(setup.plan, 2, 5, False)
        return G.loop_processors(static, G.loop_options(setup, VOCAB), lambda name: (lambda **kw: (name, kw)))

    # The key lists no processor: min length alone, with values that ban nothing.
    assert [(name, kw["min_length"]) for name, kw in made({})] == [("MinLengthLogitsProcessor", 0)]
    out = dict(made(dict(repetition_penalty=1.5, no_repeat_ngram_size=2, bad_words_ids=[[8, 9]], forced_bos_token_id=5,
                         forced_eos_token_id=6, do_sample=True, top_k=4)))
    assert list(out) == ["RepetitionPenaltyLogitsProcessor", "NoRepeatNGramLogitsProcessor", "NoBadWordsLogitsProcessor",
                         "MinLengthLogitsProcessor", "ForcedBOSTokenLogitsProcessor", "ForcedEOSTokenLogitsProcessor",
                         "TemperatureLogitsWarper", "TopKLogitsWarper", "TopPLogitsWarper"]
    assert out["NoRepeatNGramLogitsProcessor"] == {"ngram_size": 2}
    assert out["NoBadWordsLogitsProcessor"]["single"] is None  # no single-token ban: the mask is a placeholder
    assert out["ForcedEOSTokenLogitsProcessor"]["max_length"] == 8
    assert out["ForcedBOSTokenLogitsProcessor"] == {"token_id": 5}
    assert (out["TemperatureLogitsWarper"]["temperature"], out["TopKLogitsWarper"]["top_k"],
            out["TopPLogitsWarper"]["top_p"]) == (1.0, 4, 1.0)


def test_check_nan_step_raises_for_a_recorded_step_only():
    G.check_nan_step(np.int32(-1))
    with pytest.raises(NonFiniteError, match=r"^the scores became NaN at step 3; check the weights"):
        G.check_nan_step(np.int32(3))
    with pytest.raises(NonFiniteError, match=r"at step 0;"):  # the first step is a step
        G.check_nan_step(np.int32(0))


def test_beam_candidates_leave_num_beams_unfinished():
    assert G.beam_candidates(3, ()) == G.beam_candidates(3, None) == G.beam_candidates(3, [2]) == 6
    assert G.beam_candidates(3, [2, 5]) == 9
