"""The encoder-decoder config and the generation config (the architecture configs are in
`encdec.arch_configs`, importable from here too).

Each config reads and writes transformers' `config.json` / `generation_config.json`.
Keys a config does not model are kept in `extra` and written back unchanged, so a
round trip through encdec never drops what another tool put there.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any, ClassVar

# The architecture configs live in encdec.arch_configs and stay importable from here.
from .arch_configs import (  # noqa: F401
    ACTIVATIONS,
    ARCH_CONFIGS,
    DECODER_TYPES,
    ENCODER_TYPES,
    DECODER_ONLY_TYPES,
    ArchConfig,
    BartConfig,
    BertConfig,
    BertGenerationConfig,
    CamembertConfig,
    ElectraConfig,
    GPT2Config,
    RemBertConfig,
    RobertaConfig,
    XLMRobertaConfig,
    _is_int,
    _is_real,
    arch_config_from_dict,
    check_types,
)
from .errors import ConfigError, InputError
# split_role_kwargs lives in encdec.loading and stays importable from here.
from .loading import ConfigFile, as_arch_config, generic_attribute, split_role_kwargs  # noqa: F401

CONFIG_NAME = "config.json"
GENERATION_CONFIG_NAME = "generation_config.json"


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
            return generic_attribute(name, self)
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
            why = " (it is a decoder only here)" if self.encoder.model_type in DECODER_ONLY_TYPES else ""
            raise ConfigError(
                f"model_type {self.encoder.model_type!r} cannot be the encoder{why}; expected one of {ENCODER_TYPES}"
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
        """Join copies of two configs (encdec's or transformers'); the decoder copy is marked as a
        cross-attending decoder. The caller's objects are not changed (transformers marks the caller's
        decoder config, which turns the encoder into a decoder too when one object is passed twice)."""
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
