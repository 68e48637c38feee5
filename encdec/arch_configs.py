"""The architecture configs (BERT, RoBERTa and its XLM-RoBERTa / CamemBERT names,
BertGeneration, ELECTRA, RemBERT, GPT-2, BART's decoder): their keys and defaults as transformers writes them, and the
type check every config value gets.
"""

from __future__ import annotations

import copy
import json
import math
import numbers
from typing import Any, ClassVar

from .errors import ConfigError
from .loading import ConfigFile, generic_attribute

# Activation names transformers writes, and that every port implements.
ACTIVATIONS = ("gelu", "relu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "silu", "swish", "tanh")


# ---------------------------------------------------------------------------
# Value types. Every config value that encdec reads is checked when the config is
# built, so a config.json with `"vocab_size": null` or `"layer_norm_eps": "1e-12"`
# is a ConfigError naming the key, not a TypeError deep inside a port.


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


# kind -> (test, what is expected)
_KINDS: dict[str, tuple[Any, str]] = {
    "positive": (lambda v: _is_int(v) and v > 0, "an integer > 0"),
    "count": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "optional_positive": (lambda v: v is None or (_is_int(v) and v > 0), "null or an integer > 0"),
    "optional_count": (lambda v: v is None or (_is_int(v) and v >= 0), "null or an integer >= 0"),
    "token": (lambda v: v is None or (_is_int(v) and v >= 0), "null or a token id (an integer >= 0)"),
    "tokens": (
        lambda v: v is None or (_is_int(v) and v >= 0)
        or (isinstance(v, list) and all(_is_int(t) and t >= 0 for t in v)),
        "null, a token id or a list of token ids",
    ),
    "real": (_is_real, "a finite number"),
    "positive_real": (lambda v: _is_real(v) and v > 0, "a finite number > 0"),
    "probability": (lambda v: _is_real(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "token_lists": (
        lambda v: v is None or (isinstance(v, list) and all(
            isinstance(seq, list) and seq and all(_is_int(t) and t >= 0 for t in seq) for seq in v)),
        "null or a list of non-empty lists of token ids",
    ),
}


def check_types(owner: str, values: dict[str, Any], types: dict[str, str]) -> None:
    """Raise a ConfigError for the first value in `values` whose type `types` does not allow."""
    for key, kind in types.items():
        if key not in values:
            continue
        test, expected = _KINDS[kind]
        if not test(values[key]):
            raise ConfigError(f"{owner}: {key} is {values[key]!r} ({type(values[key]).__name__}); expected {expected}")



# key -> value kind of `check_types`
_BERT_TYPES = {
    **dict.fromkeys(
        ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
         "max_position_embeddings", "type_vocab_size"),
        "positive",
    ),
    **dict.fromkeys(("hidden_act", "position_embedding_type"), "str"),
    **dict.fromkeys(("hidden_dropout_prob", "attention_probs_dropout_prob"), "probability"),
    **dict.fromkeys(("initializer_range",), "real"),
    **dict.fromkeys(("layer_norm_eps",), "positive_real"),
    **dict.fromkeys(("pad_token_id", "bos_token_id"), "token"),
    **dict.fromkeys(("eos_token_id",), "tokens"),
    **dict.fromkeys(("use_cache", "is_decoder", "add_cross_attention", "tie_word_embeddings"), "bool"),
}


class ArchConfig(ConfigFile):
    """Shared behaviour of the architecture configs: defaults, extras, (de)serialisation. The attributes
    of every transformers 4.x config read as 4.x's defaults until set (`encdec.loading.generic_attribute`)."""

    model_type: ClassVar[str] = ""
    # The architecture this model_type computes with and names its parameters after, when it is
    # another's under its own name (XLM-RoBERTa and CamemBERT are RoBERTa); "" is its own.
    family: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    # Generic name -> this architecture's own key (GPT-2 says n_embd for hidden_size).
    aliases: ClassVar[dict[str, str]] = {}
    can_take_cross_attention: ClassVar[bool] = True
    # key (this architecture's own name) -> value kind of `check_types`
    types: ClassVar[dict[str, str]] = {}

    def __init__(self, **kwargs: Any) -> None:
        kwargs.pop("model_type", None)
        values = dict(self.defaults)
        for generic, own in self.aliases.items():
            if generic in kwargs:
                kwargs[own] = kwargs.pop(generic)
        extra = {}
        for key, value in kwargs.items():
            if key in values:
                values[key] = value
            else:
                extra[key] = value
        object.__setattr__(self, "_values", values)
        object.__setattr__(self, "extra", extra)
        self.validate()

    def __getattr__(self, name: str) -> Any:
        values = object.__getattribute__(self, "_values")
        aliases = type(self).aliases
        if name in aliases:
            return values[aliases[name]]
        if name in values:
            return values[name]
        extra = object.__getattribute__(self, "extra")
        if name in extra:
            return extra[name]
        try:
            return generic_attribute(name, self)
        except AttributeError:
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        name = type(self).aliases.get(name, name)
        if name in self._values:
            self._values[name] = value
        else:
            self.extra[name] = value

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.to_dict() == self.to_dict()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({json.dumps(self.to_dict(), sort_keys=True)})"

    def copy(self) -> "ArchConfig":
        return copy.deepcopy(self)

    def validate(self) -> None:
        check_types(self.model_type, self._values, self.types)
        hidden, heads = self.hidden_size, self.num_attention_heads
        if heads <= 0 or hidden % heads != 0:
            raise ConfigError(
                f"{self.model_type}: hidden size {hidden} is not divisible by the number of "
                f"attention heads {heads}; expected hidden_size % num_attention_heads == 0"
            )
        act = self.hidden_act
        if act not in ACTIVATIONS:
            raise ConfigError(f"{self.model_type}: unknown activation {act!r}; expected one of {ACTIVATIONS}")
        if self.add_cross_attention and not self.is_decoder:
            raise ConfigError(
                f"{self.model_type}: add_cross_attention=True needs is_decoder=True "
                "(cross-attention only exists in a decoder)"
            )

    @property
    def architecture(self) -> str:
        """The architecture of the modules and parameter names: `family`, or the model_type itself."""
        return type(self).family or self.model_type

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def max_positions(self) -> int:
        """How many tokens (a decoder's cache included) the position table covers."""
        return self.max_position_embeddings

    def to_dict(self) -> dict[str, Any]:
        out = {"model_type": self.model_type}
        out.update(copy.deepcopy(self._values))
        out.update(copy.deepcopy(self.extra))
        return dict(sorted(out.items()))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ArchConfig":
        return cls(**copy.deepcopy(data))


_BERT_LIKE = dict(
    vocab_size=30522,
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    hidden_act="gelu",
    hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1,
    max_position_embeddings=512,
    type_vocab_size=2,
    initializer_range=0.02,
    layer_norm_eps=1e-12,
    pad_token_id=0,
    bos_token_id=None,
    eos_token_id=None,
    position_embedding_type="absolute",
    use_cache=True,
    is_decoder=False,
    add_cross_attention=False,
    tie_word_embeddings=True,
)


class BertConfig(ArchConfig):
    model_type = "bert"
    defaults = dict(_BERT_LIKE)
    types = _BERT_TYPES

    def validate(self) -> None:
        super().validate()
        if self.position_embedding_type != "absolute":
            raise ConfigError(
                f"{self.model_type}: position_embedding_type {self.position_embedding_type!r} is not "
                "supported: encdec has no relative position embeddings; expected 'absolute'"
            )


class RobertaConfig(BertConfig):
    model_type = "roberta"
    defaults = dict(_BERT_LIKE, vocab_size=50265, pad_token_id=1, bos_token_id=0, eos_token_id=2)

    @property
    def max_positions(self) -> int:
        # Positions count from padding_idx + 1: rows 0 .. padding_idx of the table are never used by a token.
        return self.max_position_embeddings - self.pad_token_id - 1


class XLMRobertaConfig(RobertaConfig):
    """XLM-RoBERTa: the RoBERTa architecture and parameter names under model_type "xlm-roberta"."""

    model_type = "xlm-roberta"
    family = "roberta"
    defaults = dict(RobertaConfig.defaults, vocab_size=30522)


class CamembertConfig(RobertaConfig):
    """CamemBERT: the RoBERTa architecture and parameter names under model_type "camembert"."""

    model_type = "camembert"
    family = "roberta"
    defaults = dict(RobertaConfig.defaults, vocab_size=30522)


class BertGenerationConfig(BertConfig):
    model_type = "bert-generation"
    defaults = {
        k: v for k, v in dict(
            _BERT_LIKE,
            vocab_size=50358,
            hidden_size=1024,
            num_hidden_layers=24,
            num_attention_heads=16,
            intermediate_size=4096,
            pad_token_id=0,
            bos_token_id=2,
            eos_token_id=1,
        ).items() if k != "type_vocab_size"
    }


class ElectraConfig(BertConfig):
    """ELECTRA: BERT's layers over embeddings of width `embedding_size` (projected to `hidden_size`
    by `embeddings_project` when the two differ), no pooler, and the generator's LM head."""

    model_type = "electra"
    defaults = dict(
        _BERT_LIKE,
        embedding_size=128,
        hidden_size=256,
        num_attention_heads=4,
        intermediate_size=1024,
        summary_type="first",
        summary_use_proj=True,
        summary_activation="gelu",
        summary_last_dropout=0.1,
        classifier_dropout=None,
    )
    types = dict(_BERT_TYPES, embedding_size="positive")


class RemBertConfig(ArchConfig):
    """RemBERT: BERT's layers over narrower input embeddings (`input_embedding_size`, projected to
    `hidden_size` by `encoder.embedding_hidden_mapping_in`), and an LM head with output embeddings of
    their own (`output_embedding_size`), never tied to the input ones."""

    model_type = "rembert"
    defaults = dict(
        {k: v for k, v in _BERT_LIKE.items() if k != "position_embedding_type"},
        vocab_size=250300,
        hidden_size=1152,
        num_hidden_layers=32,
        num_attention_heads=18,
        input_embedding_size=256,
        output_embedding_size=1664,
        intermediate_size=4608,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        classifier_dropout_prob=0.1,
        bos_token_id=312,
        eos_token_id=313,
        tie_word_embeddings=False,
    )
    types = dict(_BERT_TYPES, input_embedding_size="positive", output_embedding_size="positive",
                 classifier_dropout_prob="probability")

    def validate(self) -> None:
        super().validate()
        if self.tie_word_embeddings:
            raise ConfigError(
                "rembert: tie_word_embeddings=True is not supported: RemBERT's output embeddings "
                f"({self.output_embedding_size} wide) are its own, not the {self.input_embedding_size}-wide input "
                "ones; expected tie_word_embeddings=false"
            )


class GPT2Config(ArchConfig):
    model_type = "gpt2"
    defaults = dict(
        vocab_size=50257,
        n_positions=1024,
        n_embd=768,
        n_layer=12,
        n_head=12,
        n_inner=None,
        activation_function="gelu_new",
        resid_pdrop=0.1,
        embd_pdrop=0.1,
        attn_pdrop=0.1,
        layer_norm_epsilon=1e-5,
        initializer_range=0.02,
        scale_attn_weights=True,
        scale_attn_by_inverse_layer_idx=False,
        reorder_and_upcast_attn=False,
        use_cache=True,
        bos_token_id=50256,
        eos_token_id=50256,
        pad_token_id=None,
        is_decoder=False,
        add_cross_attention=False,
        tie_word_embeddings=True,
    )
    types = {
        **dict.fromkeys(("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"), "positive"),
        **dict.fromkeys(("n_inner",), "optional_positive"),
        **dict.fromkeys(("activation_function",), "str"),
        **dict.fromkeys(("resid_pdrop", "embd_pdrop", "attn_pdrop"), "probability"),
        **dict.fromkeys(("layer_norm_epsilon",), "positive_real"),
        **dict.fromkeys(("initializer_range",), "real"),
        **dict.fromkeys(
            ("scale_attn_weights", "scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn", "use_cache",
             "is_decoder", "add_cross_attention", "tie_word_embeddings"),
            "bool",
        ),
        **dict.fromkeys(("bos_token_id", "pad_token_id"), "token"),
        **dict.fromkeys(("eos_token_id",), "tokens"),
    }
    aliases = dict(
        hidden_size="n_embd",
        num_attention_heads="n_head",
        num_hidden_layers="n_layer",
        max_position_embeddings="n_positions",
        hidden_act="activation_function",
        layer_norm_eps="layer_norm_epsilon",
    )

    @property
    def inner_size(self) -> int:
        return self.n_inner if self.n_inner is not None else 4 * self.n_embd

    def validate(self) -> None:
        super().validate()
        if self.reorder_and_upcast_attn:
            raise ConfigError("gpt2: reorder_and_upcast_attn=True is not supported; expected False")


class BartConfig(ArchConfig):
    """BART, used as a decoder only (transformers' `BartForCausalLM`): the `decoder_*` sizes are the ones
    that count. Post-LayerNorm layers (BartConfig has no pre/post-norm switch), learned positions
    offset by 2, `scale_embedding` (sqrt(d_model)), a LayerNorm on the embeddings.

    The generic names read the decoder's values: `num_attention_heads` is `decoder_attention_heads`
    and `num_hidden_layers` is `decoder_layers` (transformers maps the first to the encoder's count,
    which a decoder never uses); `initializer_range` is `init_std`. A config.json key of those generic
    names is kept as written (`extra`) and not read.
    """

    model_type = "bart"
    defaults = dict(
        vocab_size=50265,
        max_position_embeddings=1024,
        encoder_layers=12,
        encoder_ffn_dim=4096,
        encoder_attention_heads=16,
        decoder_layers=12,
        decoder_ffn_dim=4096,
        decoder_attention_heads=16,
        encoder_layerdrop=0.0,
        decoder_layerdrop=0.0,
        activation_function="gelu",
        d_model=1024,
        dropout=0.1,
        attention_dropout=0.0,
        activation_dropout=0.0,
        init_std=0.02,
        classifier_dropout=0.0,
        scale_embedding=False,
        use_cache=True,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
        forced_eos_token_id=2,
        is_decoder=False,
        add_cross_attention=False,
        tie_word_embeddings=True,
    )
    types = {
        **dict.fromkeys(
            ("vocab_size", "max_position_embeddings", "encoder_layers", "encoder_ffn_dim", "encoder_attention_heads",
             "decoder_layers", "decoder_ffn_dim", "decoder_attention_heads", "d_model"),
            "positive",
        ),
        **dict.fromkeys(("activation_function",), "str"),
        **dict.fromkeys(
            ("dropout", "attention_dropout", "activation_dropout", "classifier_dropout", "encoder_layerdrop",
             "decoder_layerdrop"),
            "probability",
        ),
        **dict.fromkeys(("init_std",), "real"),
        **dict.fromkeys(("pad_token_id", "bos_token_id", "decoder_start_token_id"), "token"),
        **dict.fromkeys(("eos_token_id", "forced_eos_token_id"), "tokens"),
        **dict.fromkeys(("scale_embedding", "use_cache", "is_decoder", "add_cross_attention", "tie_word_embeddings"),
                        "bool"),
    }
    aliases = dict(hidden_size="d_model", hidden_act="activation_function")
    # BART's LayerNorms are torch.nn.LayerNorm's default (transformers does not read an eps from the config).
    layer_norm_eps = 1e-5
    # Rows of the position table before position 0 (transformers' BartLearnedPositionalEmbedding.offset).
    position_offset = 2

    @property
    def num_attention_heads(self) -> int:
        return self.decoder_attention_heads

    @property
    def num_hidden_layers(self) -> int:
        return self.decoder_layers

    @property
    def intermediate_size(self) -> int:
        return self.decoder_ffn_dim

    @property
    def initializer_range(self) -> float:
        return self.init_std

    @property
    def embed_scale(self) -> float:
        """The factor on the token embeddings: sqrt(d_model) with `scale_embedding`, else 1."""
        return math.sqrt(self.d_model) if self.scale_embedding else 1.0

    @property
    def position_table_size(self) -> int:
        """Rows of `embed_positions`: `max_position_embeddings` plus the offset."""
        return self.max_position_embeddings + self.position_offset


ARCH_CONFIGS: dict[str, type[ArchConfig]] = {
    c.model_type: c for c in (BertConfig, RobertaConfig, XLMRobertaConfig, CamembertConfig, BertGenerationConfig,
                              ElectraConfig, RemBertConfig, GPT2Config, BartConfig)
}
ENCODER_TYPES = ("bert", "roberta", "xlm-roberta", "camembert", "bert-generation", "electra", "rembert")
DECODER_TYPES = ("bert", "roberta", "xlm-roberta", "camembert", "bert-generation", "electra", "rembert", "gpt2",
                 "bart")
# Architectures that exist only as a decoder here (transformers' EncoderDecoderModel cannot use them as the encoder).
DECODER_ONLY_TYPES = ("gpt2", "bart")


def arch_config_from_dict(data: dict[str, Any]) -> ArchConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"an architecture config is {data!r} ({type(data).__name__}); expected a JSON object")
    model_type = data.get("model_type")
    if model_type not in ARCH_CONFIGS:
        raise ConfigError(f"unknown model_type {model_type!r}; expected one of {sorted(ARCH_CONFIGS)}")
    return ARCH_CONFIGS[model_type].from_dict(data)
