"""Random small models (architecture pairs, widths, ties, padding, batch sizes) and generation
settings: the Flax port gives the token ids, logits and loss of transformers 5's PyTorch
EncoderDecoderModel, and of encdec's PyTorch port, holding the same weights."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from flax_testlib import (
    torch_on_one_thread,  # noqa: F401  (autouse)
    assert_close,
    assert_loss_close,
    assert_same_ids,
    flax_model,
    hf_model,
    perturbed_state,
    pt_model,
)

jax = pytest.importorskip("jax")
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from encdec.config import (  # noqa: E402
    BertConfig,
    BertGenerationConfig,
    EncoderDecoderConfig,
    GPT2Config,
    RobertaConfig,
)

VOCAB = 61
SPECIALS = {"bert": dict(pad=0, start=1), "bert-generation": dict(pad=0, start=1), "roberta": dict(pad=1, start=0),
            "gpt2": dict(pad=0, start=1)}


def arch(model_type: str, hidden: int, heads: int, **extra):
    common = dict(vocab_size=VOCAB, initializer_range=0.3, pad_token_id=SPECIALS[model_type]["pad"])
    if model_type == "gpt2":
        return GPT2Config(n_embd=hidden, n_head=heads, n_layer=2, n_positions=40, bos_token_id=1, eos_token_id=2,
                          **dict(common, **extra))
    cls = {"bert": BertConfig, "roberta": RobertaConfig, "bert-generation": BertGenerationConfig}[model_type]
    return cls(hidden_size=hidden, num_attention_heads=heads, num_hidden_layers=2, intermediate_size=29,
               max_position_embeddings=44, **dict(common, **extra))


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    encoder: tuple  # (model_type, hidden, heads, extra)
    decoder: tuple
    batch: int
    padding: str  # "none", "right" (row 1 padded) or "ragged" (every row but the first)
    num_beams: int
    max_length: int
    tie_encoder_decoder: bool = False
    seed: int = 0
    variants: bool = False  # also n-gram / repetition / min-length generations

    def config(self) -> EncoderDecoderConfig:
        et, eh, eheads, eextra = self.encoder
        dt, dh, dheads, dextra = self.decoder
        specials = SPECIALS[dt]
        return EncoderDecoderConfig.from_encoder_decoder_configs(
            arch(et, eh, eheads, **eextra), arch(dt, dh, dheads, **dextra),
            decoder_start_token_id=specials["start"], pad_token_id=specials["pad"],
            tie_encoder_decoder=self.tie_encoder_decoder,
        )


CASES = [
    Case("bert2bert_tied_ragged", ("bert", 32, 4, {}), ("bert", 32, 4, {}), 3, "ragged", 3, 12,
         tie_encoder_decoder=True, seed=1),
]
SLOW_CASES = [
    Case("bert2roberta_nopad", ("bert", 32, 4, {}), ("roberta", 32, 4, {}), 1, "none", 2, 11, seed=3, variants=True),
    Case("roberta2gpt2_proj_right", ("roberta", 32, 4, {}), ("gpt2", 24, 3, {}), 2, "right", 4, 13, seed=2),
    Case("bertgen2bert_untied_head", ("bert-generation", 32, 4, {}), ("bert", 32, 4, dict(tie_word_embeddings=False)),
         2, "ragged", 5, 12, seed=4),
    Case("roberta2roberta_proj", ("roberta", 40, 5, {}), ("roberta", 32, 4, {}), 3, "ragged", 3, 12, seed=5),
    Case("bert2gpt2_untied_scaled", ("bert", 32, 4, {}),
         # GPT-2's residual stream is not normalised: a smaller init keeps it near the fixtures' scale
         ("gpt2", 32, 4, dict(tie_word_embeddings=False, scale_attn_by_inverse_layer_idx=True, initializer_range=0.2)),
         4, "ragged", 4, 14, seed=6, variants=True),
    Case("bertgen2bertgen_tied", ("bert-generation", 32, 4, {}), ("bert-generation", 32, 4, {}), 2, "right", 2, 10,
         tie_encoder_decoder=True, seed=7),
    Case("roberta2bert_relu", ("roberta", 32, 4, dict(hidden_act="relu")), ("bert", 48, 6, dict(hidden_act="gelu_new")),
         3, "ragged", 5, 15, seed=8, variants=True),
    Case("bert2gpt2_batch5", ("bert", 24, 2, {}), ("gpt2", 24, 2, {}), 5, "ragged", 2, 9, seed=9),
]


def _inputs(case: Case, config: EncoderDecoderConfig):
    rng = np.random.default_rng(case.seed)
    length = 9
    ids = rng.integers(3, VOCAB, (case.batch, length))
    mask = np.ones_like(ids)
    if case.padding == "right" and case.batch > 1:
        mask[1, 6:] = 0
    elif case.padding == "ragged":
        for row in range(1, case.batch):
            mask[row, length - 1 - (2 * row) % (length - 2):] = 0
    ids = np.where(mask == 1, ids, config.encoder.pad_token_id)
    target = 7
    labels = rng.integers(3, VOCAB, (case.batch, target))
    for row in range(1, case.batch):
        labels[row, target - row % 3:] = -100  # ragged targets: ignored label positions
    return ids, mask, labels


class Bundle:
    """One case's weights in the three models, its inputs and an eos id that the models do generate."""

    def __init__(self, case: Case, tmp_path_factory) -> None:
        self.case = case
        self.config = case.config()
        state = perturbed_state(self.config, case.seed)
        self.flax = flax_model(self.config, state)
        self.hf = hf_model(self.config, state)
        self.pt = pt_model(self.config, state, tmp_path_factory.mktemp(case.name))
        self.ids, self.mask, self.labels = _inputs(case, self.config)
        specials = SPECIALS[self.config.decoder.model_type]
        self.pad, self.start = specials["pad"], specials["start"]
        # eos: the first token greedy search makes at position 3 or later (first row first), so
        # that a row ends there and the others (and the beams) end where they meet it, if they do.
        free = self.hf_generate(max_length=case.max_length, eos_token_id=None)
        made = [int(t) for t in free[:, 3:].T.reshape(-1) if int(t) not in (self.pad, self.start)]
        assert made, f"{case.name}: greedy search made only pad/start tokens: {free}"
        self.eos = made[0]
        self.free = free  # what greedy search makes without eos: tokens worth banning or forcing

    def hf_generate(self, **options):
        options = dict(dict(decoder_start_token_id=self.start, pad_token_id=self.pad), **options)
        with torch.no_grad():
            return self.hf.generate(
                torch.tensor(self.ids), attention_mask=torch.tensor(self.mask), **options
            ).numpy()

    def pt_generate(self, **options):
        options = dict(dict(decoder_start_token_id=self.start, pad_token_id=self.pad), **options)
        with torch.no_grad():
            return self.pt.generate(torch.tensor(self.ids), attention_mask=torch.tensor(self.mask), **options).numpy()

    def flax_generate(self, **options):
        options = dict(dict(decoder_start_token_id=self.start, pad_token_id=self.pad), **options)
        return np.asarray(self.flax.generate(self.ids, self.mask, **options).sequences)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    cache = {}

    def get(case):
        if case.name not in cache:
            cache[case.name] = Bundle(case, tmp_path_factory)
        return cache[case.name]

    return get


def _check_forward(b: Bundle):
    ids, mask, labels = b.ids, b.mask, b.labels
    decoder_ids = np.where(labels == -100, b.pad, labels)
    decoder_ids = np.concatenate([np.full((len(ids), 1), b.start), decoder_ids[:, :-1]], axis=1)
    decoder_mask = (decoder_ids != b.pad).astype(np.int64)
    decoder_mask[:, 0] = 1
    got = b.flax(ids, mask, decoder_input_ids=decoder_ids, decoder_attention_mask=decoder_mask,
                 output_hidden_states=True)
    t = {k: torch.tensor(v) for k, v in dict(ids=ids, mask=mask, dids=decoder_ids, dmask=decoder_mask).items()}
    with torch.no_grad():
        for label, ref in (
            ("transformers", b.hf(input_ids=t["ids"], attention_mask=t["mask"], decoder_input_ids=t["dids"],
                                  decoder_attention_mask=t["dmask"], output_hidden_states=True)),
            ("encdec.pt", b.pt(input_ids=t["ids"], attention_mask=t["mask"], decoder_input_ids=t["dids"],
                               decoder_attention_mask=t["dmask"], output_hidden_states=True)),
        ):
            assert_close(f"{b.case.name} logits vs {label}", got.logits, ref.logits.numpy())
            assert_close(f"{b.case.name} encoder output vs {label}", got.encoder_last_hidden_state,
                         ref.encoder_last_hidden_state.numpy())
            assert len(got.decoder_hidden_states) == len(ref.decoder_hidden_states)
            for i, (h, r) in enumerate(zip(got.decoder_hidden_states, ref.decoder_hidden_states)):
                assert_close(f"{b.case.name} decoder hidden state {i} vs {label}", h, r.numpy())
    got = b.flax(ids, mask, labels=labels)
    with torch.no_grad():
        for label, ref in (
            ("transformers", b.hf(input_ids=t["ids"], attention_mask=t["mask"], labels=torch.tensor(labels))),
            ("encdec.pt", b.pt(input_ids=t["ids"], attention_mask=t["mask"], labels=torch.tensor(labels))),
        ):
            assert_loss_close(got.loss, ref.loss.item())
            assert_close(f"{b.case.name} logits from labels vs {label}", got.logits, ref.logits.numpy())


def _generations(b: Bundle):
    """(name, options): greedy; beam search under several length penalties, early-stopping modes and
    numbers of returned sequences (one compilation); with `variants`, n-gram and repetition limits."""
    k, length, eos = b.case.num_beams, b.case.max_length, b.eos
    out = [
        ("greedy", dict(max_length=length, eos_token_id=eos)),
        ("greedy no eos", dict(max_length=length, eos_token_id=None)),
        (f"beam{k}", dict(max_length=length, num_beams=k, eos_token_id=eos)),
        (f"beam{k} lp2 early", dict(max_length=length, num_beams=k, eos_token_id=eos, length_penalty=2.0,
                                    early_stopping=True, num_return_sequences=min(2, k))),
        (f"beam{k} lp0.5 never all", dict(max_length=length, num_beams=k, eos_token_id=eos, length_penalty=0.5,
                                          early_stopping="never", num_return_sequences=k)),
        (f"beam{k} lp-1", dict(max_length=length, num_beams=k, eos_token_id=eos, length_penalty=-1.0)),
    ]
    if b.case.variants:
        out += [
            (f"beam{k} ngram2", dict(max_length=length, num_beams=k, eos_token_id=eos, no_repeat_ngram_size=2,
                                     num_return_sequences=k)),
            ("greedy ngram3 min_length", dict(max_length=length, eos_token_id=eos, no_repeat_ngram_size=3,
                                              min_length=length - 3)),
            ("greedy repetition penalty", dict(max_length=length, eos_token_id=eos, repetition_penalty=1.5)),
            (f"beam{k} bad words, forced bos/eos, max_new_tokens", dict(
                max_new_tokens=length - 3, num_beams=k, eos_token_id=eos, num_return_sequences=k,
                # a token greedy search makes first, and a pair it makes later: both must change the outcome
                bad_words_ids=[[int(b.free[0, 1])], [int(b.free[0, 2]), int(b.free[0, 3])]],
                forced_bos_token_id=int(b.free[0, 2]), forced_eos_token_id=eos)),
        ]
    return out


def _check_case(b: Bundle):
    _check_forward(b)
    for name, options in _generations(b):
        got = b.flax_generate(**options)
        assert_same_ids(f"{b.case.name} {name} vs transformers", got, b.hf_generate(**options))
        assert_same_ids(f"{b.case.name} {name} vs encdec.pt", got, b.pt_generate(**options))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_matches_transformers_and_pt_port(case, bundles):
    _check_case(bundles(case))


@pytest.mark.slow
@pytest.mark.parametrize("case", SLOW_CASES, ids=[c.name for c in SLOW_CASES])
def test_matches_transformers_and_pt_port_more(case, bundles):
    _check_case(bundles(case))


