"""Architecture configs, the encoder-decoder config and the generation config.

Each config reads and writes transformers' `config.json` / `generation_config.json`.
Keys a config does not model are kept in `extra` and written back unchanged, so a
round trip through encdec never drops what another tool put there.
"""

from __future__ import annotations

import copy
import json
import math
import numbers
import os
from typing import Any, ClassVar

from .errors import ConfigError, InputError
# split_role_kwargs lives in encdec.loading and stays importable from here.
from .loading import ConfigFile, as_arch_config, generic_attribute, split_role_kwargs  # noqa: F401

CONFIG_NAME = "config.json"
GENERATION_CONFIG_NAME = "generation_config.json"

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
            return generic_attribute(name)
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


ARCH_CONFIGS: dict[str, type[ArchConfig]] = {
    c.model_type: c for c in (BertConfig, RobertaConfig, BertGenerationConfig, GPT2Config)
}
ENCODER_TYPES = ("bert", "roberta", "bert-generation")
DECODER_TYPES = ("bert", "roberta", "bert-generation", "gpt2")


def arch_config_from_dict(data: dict[str, Any]) -> ArchConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"an architecture config is {data!r} ({type(data).__name__}); expected a JSON object")
    model_type = data.get("model_type")
    if model_type not in ARCH_CONFIGS:
        raise ConfigError(f"unknown model_type {model_type!r}; expected one of {sorted(ARCH_CONFIGS)}")
    return ARCH_CONFIGS[model_type].from_dict(data)


class EncoderDecoderConfig(ConfigFile):
    """An encoder config, a decoder config (each encdec's, a dict or transformers'), and the joined model's keys."""

    model_type: ClassVar[str] = "encoder-decoder"
    defaults: ClassVar[dict[str, Any]] = dict(
        decoder_start_token_id=None,
        pad_token_id=None,
        eos_token_id=None,
        bos_token_id=None,
        tie_encoder_decoder=False,
        tie_word_embeddings=False,
        is_encoder_decoder=True,
    )

    def __init__(self, encoder: ArchConfig | dict, decoder: ArchConfig | dict, **kwargs: Any) -> None:
        encoder = as_arch_config(encoder, "encoder")
        decoder = as_arch_config(decoder, "decoder")
        kwargs.pop("model_type", None)
        self.encoder = encoder
        self.decoder = decoder
        values = dict(self.defaults)
        extra = {}
        for key, value in kwargs.items():
            (values if key in values else extra)[key] = value
        self._values = values
        self.extra = extra
        self.validate()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name in ("extra", "encoder", "decoder"):
            raise AttributeError(name)
        if name in self._values:
            return self._values[name]
        if name in self.extra:
            return self.extra[name]
        try:
            return generic_attribute(name)
        except AttributeError:
            raise AttributeError(f"EncoderDecoderConfig has no attribute {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("encoder", "decoder", "_values", "extra"):
            object.__setattr__(self, name, value)
        elif name in self._values:
            self._values[name] = value
        else:
            self.extra[name] = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EncoderDecoderConfig) and other.to_dict() == self.to_dict()

    def __repr__(self) -> str:
        return f"EncoderDecoderConfig({json.dumps(self.to_dict(), sort_keys=True)})"

    def copy(self) -> "EncoderDecoderConfig":
        return copy.deepcopy(self)

    types: ClassVar[dict[str, str]] = {
        **dict.fromkeys(("decoder_start_token_id", "pad_token_id", "bos_token_id"), "token"),
        **dict.fromkeys(("eos_token_id",), "tokens"),
        **dict.fromkeys(("tie_encoder_decoder", "tie_word_embeddings", "is_encoder_decoder"), "bool"),
    }

    def validate(self) -> None:
        # The halves first: an attribute set on them after construction is refused as their constructors refuse it.
        self.encoder.validate()
        self.decoder.validate()
        check_types("encoder-decoder", self._values, self.types)
        if self.encoder.model_type not in ENCODER_TYPES:
            raise ConfigError(
                f"model_type {self.encoder.model_type!r} cannot be the encoder; expected one of {ENCODER_TYPES}"
            )
        if self.decoder.model_type not in DECODER_TYPES:
            raise ConfigError(
                f"model_type {self.decoder.model_type!r} cannot be the decoder; expected one of {DECODER_TYPES}"
            )
        if not type(self.decoder).can_take_cross_attention:
            raise ConfigError(
                f"model_type {self.decoder.model_type!r} has no cross-attention, so it cannot attend to an "
                f"encoder; expected a decoder type that can: {DECODER_TYPES}"
            )
        if not (self.decoder.is_decoder and self.decoder.add_cross_attention):
            raise ConfigError(
                f"the decoder config ({self.decoder.model_type}) has is_decoder={self.decoder.is_decoder}, "
                f"add_cross_attention={self.decoder.add_cross_attention}; expected both True "
                "(build it with EncoderDecoderConfig.from_encoder_decoder_configs)"
            )
        if self.tie_encoder_decoder and self.encoder.model_type != self.decoder.model_type:
            raise ConfigError(
                f"tie_encoder_decoder=True needs the same architecture on both sides; got "
                f"{self.encoder.model_type!r} and {self.decoder.model_type!r}"
            )
        if self.tie_encoder_decoder and self.encoder.hidden_size != self.decoder.hidden_size:
            raise ConfigError(
                f"tie_encoder_decoder=True needs equal hidden sizes; got {self.encoder.hidden_size} "
                f"and {self.decoder.hidden_size}"
            )

    @property
    def needs_projection(self) -> bool:
        """Whether `enc_to_dec_proj` maps encoder states to the decoder's width."""
        return self.encoder.hidden_size != self.decoder.hidden_size

    @classmethod
    def from_encoder_decoder_configs(
        cls, encoder_config: ArchConfig, decoder_config: ArchConfig, **kwargs: Any
    ) -> "EncoderDecoderConfig":
        """Join two configs (encdec's or transformers'); the decoder copy is marked as a cross-attending decoder.

        The caller's objects are not changed.
        """
        encoder_config = as_arch_config(encoder_config, "encoder_config")
        decoder = as_arch_config(decoder_config, "decoder_config").copy()
        decoder.is_decoder = True
        decoder.add_cross_attention = True
        return cls(encoder=encoder_config.copy(), decoder=decoder, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model_type": self.model_type}
        out.update(copy.deepcopy(self._values))
        out.update(copy.deepcopy(self.extra))
        out["encoder"] = self.encoder.to_dict()
        out["decoder"] = self.decoder.to_dict()
        return dict(sorted(out.items()))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EncoderDecoderConfig":
        data = copy.deepcopy(data)
        model_type = data.get("model_type")
        if model_type != cls.model_type:
            raise ConfigError(
                f"model_type {model_type!r} is not an encoder-decoder config; expected {cls.model_type!r}"
            )
        if "encoder" not in data or "decoder" not in data:
            raise ConfigError("an encoder-decoder config needs both 'encoder' and 'decoder' entries")
        for role in ("encoder", "decoder"):
            if not isinstance(data[role], dict):
                raise ConfigError(f"'{role}' is {data[role]!r}; expected the {role}'s config as a JSON object")
        return cls(encoder=data.pop("encoder"), decoder=data.pop("decoder"), **data)


# A config is a few kilobytes; one this large is not a config.
MAX_CONFIG_BYTES = 16 * 2**20


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: file not found; expected a transformers JSON config")
    try:
        if os.path.getsize(path) > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: {os.path.getsize(path)} bytes; expected a JSON config of a few kilobytes")
        with open(path, "rb") as f:
            data = json.loads(f.read())
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror or e})") from None
    except (ValueError, RecursionError) as e:  # bad JSON or UTF-8, too deep, numbers too long
        raise ConfigError(f"{path}: not valid JSON ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def load_arch_config(directory: str | os.PathLike) -> ArchConfig:
    """The config of a single pretrained encoder or decoder (a BERT, GPT-2... folder)."""
    path = os.path.join(directory, CONFIG_NAME)
    return _naming_file(path, lambda: arch_config_from_dict(read_json(path)))


def _naming_file(path: str | os.PathLike, build: Any) -> Any:
    """`build()`, with a ConfigError that does not name `path` made to name it."""
    try:
        return build()
    except ConfigError as e:
        if str(path) in str(e):
            raise
        raise ConfigError(f"{path}: {e}") from None


class GenerationConfig:
    """The options of `generate`, with transformers' names and defaults."""

    defaults: ClassVar[dict[str, Any]] = dict(
        max_length=20,
        max_new_tokens=None,
        min_length=0,
        min_new_tokens=None,
        early_stopping=False,
        do_sample=False,
        num_beams=1,
        temperature=1.0,
        top_k=50,
        top_p=1.0,
        repetition_penalty=1.0,
        length_penalty=1.0,
        no_repeat_ngram_size=0,
        bad_words_ids=None,
        num_return_sequences=1,
        output_scores=False,
        return_dict_in_generate=False,
        pad_token_id=None,
        bos_token_id=None,
        eos_token_id=None,
        decoder_start_token_id=None,
        forced_bos_token_id=None,
        forced_eos_token_id=None,
        use_cache=True,
    )

    def __init__(self, **kwargs: Any) -> None:
        values = dict(self.defaults)
        extra = {}
        for key, value in kwargs.items():
            (values if key in values else extra)[key] = value
        object.__setattr__(self, "_values", values)
        object.__setattr__(self, "extra", extra)
        self.validate()

    def __getattr__(self, name: str) -> Any:
        values = object.__getattribute__(self, "_values")
        if name in values:
            return values[name]
        extra = object.__getattribute__(self, "extra")
        if name in extra:
            return extra[name]
        raise AttributeError(f"GenerationConfig has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        (self._values if name in self._values else self.extra)[name] = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GenerationConfig) and other.to_dict() == self.to_dict()

    def __repr__(self) -> str:
        return f"GenerationConfig({json.dumps(self.to_diff_dict(), sort_keys=True)})"

    types: ClassVar[dict[str, str]] = {
        **dict.fromkeys(("max_length", "num_beams", "num_return_sequences"), "positive"),
        **dict.fromkeys(("max_new_tokens",), "optional_positive"),
        **dict.fromkeys(("min_length", "top_k", "no_repeat_ngram_size"), "count"),
        **dict.fromkeys(("min_new_tokens",), "optional_count"),
        **dict.fromkeys(("do_sample", "output_scores", "return_dict_in_generate", "use_cache"), "bool"),
        **dict.fromkeys(("temperature", "length_penalty"), "real"),
        **dict.fromkeys(("top_p",), "probability"),
        **dict.fromkeys(("repetition_penalty",), "positive_real"),
        **dict.fromkeys(("bad_words_ids",), "token_lists"),
        **dict.fromkeys(
            ("pad_token_id", "bos_token_id", "decoder_start_token_id", "forced_bos_token_id"), "token"
        ),
        **dict.fromkeys(("eos_token_id", "forced_eos_token_id"), "tokens"),
    }

    def validate(self) -> None:
        check_types("generation config", self._values, self.types)
        if self.num_beams < 1:
            raise ConfigError(f"num_beams must be >= 1, got {self.num_beams}")
        if self.num_return_sequences > self.num_beams and not self.do_sample:
            raise ConfigError(
                f"num_return_sequences ({self.num_return_sequences}) must be <= num_beams "
                f"({self.num_beams}) without sampling"
            )
        if self.early_stopping not in (True, False, "never"):
            raise ConfigError(f"early_stopping must be True, False or 'never', got {self.early_stopping!r}")
        if self.do_sample and self.temperature <= 0:
            raise ConfigError(f"temperature must be > 0 when sampling, got {self.temperature}")

    def update(self, **kwargs: Any) -> "GenerationConfig":
        """A copy with the given options changed; unknown options are an error."""
        unknown = [k for k in kwargs if k not in self._values]
        if unknown:
            raise ConfigError(f"unknown generation option(s) {unknown}; expected some of {sorted(self._values)}")
        new = copy.deepcopy(self)
        new._values.update(kwargs)
        new.validate()
        return new

    @property
    def eos_token_ids(self) -> list[int]:
        eos = self.eos_token_id
        if eos is None:
            return []
        return list(eos) if isinstance(eos, (list, tuple)) else [eos]

    def lengths(self, prompt_length: int, explicit_max_length: bool) -> tuple[int, int]:
        """(max_length, min_length) of a generation from a decoder prompt of `prompt_length` tokens.

        Lengths count the prompt (the start token included), as transformers counts them;
        without an explicit `max_length` transformers 5 generates 20 new tokens by default.
        """
        if self.max_new_tokens is not None:
            max_length = self.max_new_tokens + prompt_length
        elif explicit_max_length:
            max_length = self.max_length
        else:
            max_length = self.max_length + prompt_length
        min_length = self.min_new_tokens + prompt_length if self.min_new_tokens is not None else (self.min_length or 0)
        if max_length <= prompt_length:
            raise InputError(
                f"max_length is {max_length}; expected more than the decoder prompt's {prompt_length} token(s)"
            )
        return max_length, min_length

    def to_dict(self) -> dict[str, Any]:
        out = copy.deepcopy(self._values)
        out.update(copy.deepcopy(self.extra))
        return dict(sorted(out.items()))

    def to_diff_dict(self) -> dict[str, Any]:
        """Only what differs from the defaults, as transformers writes it."""
        out = {k: v for k, v in self._values.items() if v != self.defaults[k]}
        out.update(copy.deepcopy(self.extra))
        return dict(sorted(out.items()))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "GenerationConfig":
        return cls(**copy.deepcopy(data))

    @classmethod
    def from_model_config(cls, config: EncoderDecoderConfig) -> "GenerationConfig":
        """The generation options a model config implies: its special token ids and any generation
        option set on it (transformers 4.x configs held `max_length`, `num_beams`, ...).

        The result follows `config` (`follow`) until it is changed itself.
        """
        made = cls(**{k: v for k in cls.defaults if (v := getattr(config, k, None)) is not None})
        object.__setattr__(made, "_made_as", made.to_dict())
        return made

    def follow(self, config: EncoderDecoderConfig) -> "GenerationConfig":
        """This config, brought up to date (in place) with the model config `config` when it was made
        by `from_model_config` and has not been changed since; any other config as it is.

        transformers 4.x's rule: a user who sets only `model.config.decoder_start_token_id`
        (or `pad_token_id`, `max_length`, ...) generates and saves with it.
        """
        made_as = self.__dict__.get("_made_as")
        if made_as is None or made_as != self.to_dict():
            return self
        fresh = type(self).from_model_config(config)
        self.__dict__.update(fresh.__dict__)
        return self

    @staticmethod
    def model_attribute() -> property:
        """The `generation_config` attribute of the model classes: assigned as usual; read, it is
        first brought up to date with `model.config` (`follow`), so generate and save see the
        model config's current generation fields while the generation config was left alone."""

        def read(model) -> "GenerationConfig":
            return model._generation_config.follow(model.config)

        def assign(model, value: "GenerationConfig") -> None:
            model._generation_config = value

        return property(read, assign, doc="The options `generate` uses when the call gives none.")

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        with open(os.path.join(directory, GENERATION_CONFIG_NAME), "w") as f:
            f.write(json.dumps(self.to_diff_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> "GenerationConfig":
        path = os.path.join(directory, GENERATION_CONFIG_NAME)
        return _naming_file(path, lambda: cls.from_dict(read_json(path)))
