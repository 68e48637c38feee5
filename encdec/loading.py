"""The keyword arguments of `from_pretrained` / `from_encoder_decoder_pretrained`, as transformers 4.57 took them.

transformers users pass loading options (`torch_dtype=`, `device_map=`,
`attn_implementation=`, `from_pt=`...) and config attributes through the same
`**kwargs`. `split_loading_kwargs` takes the loading options out once for the three
ports; what is left must be an attribute of the config it lands in
(`check_config_kwargs`), so a typo or an option of another port is an error that
names it and suggests the closest known name, never a silent key of config.json.
The ports only turn the resolved dtype name and device string into their
framework's objects. Also here: configs given as transformers objects
(`as_arch_config`, `as_encoder_decoder_config`) and the JSON check run before a
config is written (`check_json_config`).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import os
from typing import Any, Iterable, Mapping, Optional

from .errors import ConfigError

logger = logging.getLogger("encdec")

PORTS = ("pt", "tf", "flax")
DTYPE_NAMES = ("float32", "bfloat16", "float16")
ATTN_IMPLEMENTATIONS = ("sdpa", "eager")
# Options of transformers' loaders that choose the source format; every format loads anyway.
FORMAT_FLAGS = tuple(f"{role}from_{fmt}" for role in ("", "encoder_", "decoder_") for fmt in ("pt", "tf", "flax"))
# The attribute (outside config.json: not in to_dict) where a PyTorch model's configs carry `attn_implementation`.
ATTN_IMPLEMENTATION_ATTR = "_attn_implementation"

# The attributes every transformers 4.57 `PretrainedConfig` has, with 4.57's defaults
# (`PretrainedConfig.__init__` and `_get_global_generation_defaults`). transformers 5
# keeps only the first group; encdec reads all of them, and writes one to
# config.json only when it was set.
GENERIC_CONFIG_DEFAULTS: dict[str, Any] = dict(
    return_dict=True,
    output_hidden_states=False,
    output_attentions=False,
    torchscript=False,
    dtype=None,  # 4.57 writes "dtype"; `torch_dtype` is its older name
    torch_dtype=None,
    tie_word_embeddings=True,
    chunk_size_feed_forward=0,
    is_encoder_decoder=False,
    is_decoder=False,
    cross_attention_hidden_size=None,
    add_cross_attention=False,
    tie_encoder_decoder=False,
    architectures=None,
    finetuning_task=None,
    num_labels=2,
    tokenizer_class=None,
    prefix=None,
    bos_token_id=None,
    pad_token_id=None,
    eos_token_id=None,
    sep_token_id=None,
    decoder_start_token_id=None,
    task_specific_params=None,
    problem_type=None,
    id2label={0: "LABEL_0", 1: "LABEL_1"},
    label2id={"LABEL_0": 0, "LABEL_1": 1},
    pruned_heads={},
    tf_legacy_loss=False,
    use_bfloat16=False,
    # the generation defaults of 4.x configs
    max_length=20,
    min_length=0,
    do_sample=False,
    early_stopping=False,
    num_beams=1,
    num_beam_groups=1,
    diversity_penalty=0.0,
    temperature=1.0,
    top_k=50,
    top_p=1.0,
    typical_p=1.0,
    repetition_penalty=1.0,
    length_penalty=1.0,
    no_repeat_ngram_size=0,
    encoder_no_repeat_ngram_size=0,
    bad_words_ids=None,
    num_return_sequences=1,
    output_scores=False,
    return_dict_in_generate=False,
    forced_bos_token_id=None,
    forced_eos_token_id=None,
    remove_invalid_values=False,
    exponential_decay_length_penalty=None,
    suppress_tokens=None,
    begin_suppress_tokens=None,
)


def generic_attribute(name: str, config: Any) -> Any:
    """The 4.57 default of a generic config attribute of `config`; AttributeError for any other name."""
    if name == "use_return_dict":
        # 4.57's property: derived from the config's own values, set or default.
        return bool(config.return_dict) and not config.torchscript
    if name in GENERIC_CONFIG_DEFAULTS:
        value = GENERIC_CONFIG_DEFAULTS[name]
        return value.copy() if isinstance(value, (list, dict)) else value
    raise AttributeError(name)


@dataclasses.dataclass(frozen=True)
class LoadingOptions:
    """The loading options of one call, resolved.

    `dtype`: None (the port's default), "auto" (the checkpoint's dtype), a name of
    DTYPE_NAMES, or the framework's own dtype object as given. `device`: None, "cpu",
    "cuda" or "cuda:N". `attn_implementation`: None, "sdpa" or "eager".
    """

    dtype: Any = None
    device: Optional[str] = None
    attn_implementation: Optional[str] = None


def _closest(name: str, known: Iterable[str]) -> str:
    match = difflib.get_close_matches(name, sorted(set(known)), n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


def _dtype_option(value: Any, name: str) -> Any:
    if isinstance(value, str):
        text = value.split(".")[-1]  # "torch.bfloat16" -> "bfloat16"
        if text == "auto" or text in DTYPE_NAMES:
            return text
        raise ConfigError(f"{name}={value!r}: unknown dtype; expected 'auto' or one of {DTYPE_NAMES}")
    return value


def _device_option(value: Any) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, Mapping):
        devices = {str(v) for v in value.values()}
        if set(value) == {""} and len(devices) == 1:
            value = next(iter(value.values()))  # {"": device}: the whole model on one device
        else:
            raise ConfigError(
                f"device_map={dict(value)!r} places the model on several devices or by module; encdec loads a "
                "model onto one device (device_map='auto', 'cpu', 'cuda' or 'cuda:N'): multi-device placement is "
                "the job of the distributed API"
            )
    if isinstance(value, int) and not isinstance(value, bool):
        return f"cuda:{value}"  # transformers: an int is a CUDA device index
    text = str(value)  # a torch.device prints as "cuda:0"
    if text in ("auto", "cpu", "cuda") or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise ConfigError(
        f"device_map={value!r}: expected 'auto', 'cpu', 'cuda', 'cuda:N' or a torch.device (one device; "
        "multi-device placement is the job of the distributed API)"
    )


def split_loading_kwargs(kwargs: dict[str, Any], port: str) -> LoadingOptions:
    """Pop the loading options of `port` ("pt", "tf" or "flax") out of `kwargs` and resolve them.

    PyTorch takes `torch_dtype` / `dtype`, `device_map` and `attn_implementation`;
    TF and Flax take `dtype`, and refuse `device_map` and `attn_implementation`,
    which transformers' TF and Flax loaders did not have. The format flags
    (`from_pt`, `encoder_from_tf`, ...) are taken and ignored in every port. What
    stays in `kwargs` is for the configs (see `check_config_kwargs`).
    """
    if port not in PORTS:
        raise ConfigError(f"unknown port {port!r}; expected one of {PORTS}")
    flags = [k for k in FORMAT_FLAGS if k in kwargs]
    for key in flags:
        kwargs.pop(key)
    if flags:
        logger.debug("%s: ignored; encdec reads every checkpoint format whatever the flags say", ", ".join(flags))
    if port != "pt":
        for key in ("device_map", "attn_implementation", "torch_dtype"):
            if key in kwargs:
                hint = "; dtype= sets the dtype" if key == "torch_dtype" else ""
                raise ConfigError(
                    f"{key}= is an option of the PyTorch loader; transformers' TF and Flax loaders did not "
                    f"take it, nor does encdec's {port} port{hint}"
                )
    dtype = None
    if port == "pt" and "torch_dtype" in kwargs:
        if "dtype" in kwargs:
            raise ConfigError("both torch_dtype= and dtype= given; expected one of them (they are the same option)")
        dtype = _dtype_option(kwargs.pop("torch_dtype"), "torch_dtype")
    elif "dtype" in kwargs:
        dtype = _dtype_option(kwargs.pop("dtype"), "dtype")
    device = _device_option(kwargs.pop("device_map", None))
    attn = kwargs.pop("attn_implementation", None)
    if attn is not None and attn not in ATTN_IMPLEMENTATIONS:
        raise ConfigError(f"attn_implementation={attn!r}: expected one of {ATTN_IMPLEMENTATIONS}")
    return LoadingOptions(dtype, device, attn)


def auto_dtype(config: Any, state: Mapping[str, Any]) -> Optional[str]:
    """`dtype="auto"`, as transformers resolves it: the config's `torch_dtype` (or `dtype`) when it
    names one of DTYPE_NAMES, else the dtype of the checkpoint's first floating tensor (None if none)."""
    for key in ("torch_dtype", "dtype"):
        value = getattr(config, key, None)
        if isinstance(value, str) and value.split(".")[-1] in DTYPE_NAMES:
            return value.split(".")[-1]
    for array in state.values():
        name = getattr(getattr(array, "dtype", None), "name", "")
        if name in DTYPE_NAMES:
            return name
    return None


def record_dtype(config: Any, name: str) -> None:
    """Note the model's dtype on `config` as transformers 4.57 writes it: `"dtype": "bfloat16"` in
    config.json (an older folder's `torch_dtype` key is replaced, so the two never disagree)."""
    config.extra.pop("torch_dtype", None)
    config.dtype = name


def resolve_dtype(options: LoadingOptions, config: Any, state: Mapping[str, Any]) -> Any:
    """`options.dtype` with "auto" resolved (`auto_dtype`): None, a name of DTYPE_NAMES or a framework dtype."""
    return auto_dtype(config, state) if options.dtype == "auto" else options.dtype


def split_role_kwargs(kwargs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Pop `encoder_*` / `decoder_*` options out of `kwargs`, by role, without the prefix.

    What stays in `kwargs` is for the joined config, including its own keys that
    happen to start with a role's name (`decoder_start_token_id`).
    """
    from .config import EncoderDecoderConfig

    parts: dict[str, dict[str, Any]] = {"encoder": {}, "decoder": {}}
    for key in list(kwargs):
        if key in EncoderDecoderConfig.defaults:
            continue
        for role, options in parts.items():
            if key.startswith(role + "_"):
                options[key[len(role) + 1 :]] = kwargs.pop(key)
    return parts


def check_config_kwargs(kwargs: Mapping[str, Any], config: Any, what: str, prefix: str = "",
                        elsewhere: Iterable[str] = ()) -> None:
    """Raise a ConfigError for the first key of `kwargs` that is not an attribute of `config` (a config,
    or the names of its keys) nor a generic 4.x attribute, naming it (as the caller wrote it: `prefix`
    + key) and suggesting the closest known name, among `elsewhere` too (the names the caller's other
    configs take: a `decoder_` kwarg may be meant for the joined config)."""
    if callable(getattr(config, "to_dict", None)):
        known = set(config.to_dict()) | set(getattr(type(config), "aliases", {}))
    else:
        known = set(config)
    known |= set(GENERIC_CONFIG_DEFAULTS)
    for key in kwargs:
        if key not in known:
            names = {prefix + k for k in known} | set(elsewhere) | {"torch_dtype", "dtype", "device_map",
                                                                   "attn_implementation"}
            raise ConfigError(
                f"unknown keyword argument {prefix + key!r}: neither a loading option nor an attribute of the "
                f"{what} config{_closest(prefix + key, names)}"
            )


# ---------------------------------------------------------------------------
# config.json of a folder


class ConfigFile:
    """config.json in and out of a folder, for the architecture configs and the encoder-decoder config."""

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write `directory/config.json` (the folder is made if needed). Every value is checked to be JSON
        first, and the file is written aside and renamed into place, so a failure leaves no half file."""
        data = self.to_dict()
        check_json_config(data, f"{self.model_type} config")
        os.makedirs(directory, exist_ok=True)
        from .config import CONFIG_NAME

        path = os.path.join(directory, CONFIG_NAME)
        tmp = f"{path}.tmp{os.getpid()}"
        try:
            with open(tmp, "w") as f:
                f.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike):
        """The config in `directory/config.json`; its model_type must be this class's."""
        from .config import CONFIG_NAME, _naming_file, read_json

        path = os.path.join(directory, CONFIG_NAME)
        return _naming_file(path, lambda: cls._from_file_dict(read_json(path)))

    @classmethod
    def _from_file_dict(cls, data: dict[str, Any]):
        from .config import ArchConfig, arch_config_from_dict

        if cls is ArchConfig:
            return arch_config_from_dict(data)  # any architecture
        if data.get("model_type") != cls.model_type:
            raise ConfigError(
                f"the folder holds a {data.get('model_type')!r} config; expected {cls.model_type!r} for "
                f"{cls.__name__} (encdec.config.load_arch_config reads any architecture)"
            )
        return cls.from_dict(data)


# ---------------------------------------------------------------------------
# transformers' config objects


def _describe(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _is_foreign_config(obj: Any) -> bool:
    return callable(getattr(obj, "to_dict", None)) and isinstance(getattr(obj, "model_type", None), str)


def _plain_dict(obj: Any) -> dict[str, Any]:
    """A transformers config's `to_dict()`, with what is not JSON (a torch dtype) as its name."""
    data = obj.to_dict()
    for key in ("torch_dtype", "dtype"):
        if data.get(key) is not None and not isinstance(data[key], str):
            data[key] = str(data[key]).split(".")[-1]
    data.pop("transformers_version", None)
    data.pop("_name_or_path", None)
    return data


def as_arch_config(obj: Any, what: str = "config") -> Any:
    """An encdec ArchConfig for `obj`: an ArchConfig (returned as it is), a dict, or a transformers config."""
    from .config import ArchConfig, arch_config_from_dict

    if isinstance(obj, ArchConfig):
        return obj
    if isinstance(obj, dict):
        return arch_config_from_dict(obj)
    if _is_foreign_config(obj):
        return arch_config_from_dict(_plain_dict(obj))
    raise ConfigError(
        f"{what} is a {_describe(obj)}; expected an encdec architecture config (encdec.BertConfig, ...), "
        "a dict or a transformers config"
    )


def as_encoder_decoder_config(obj: Any, what: str = "config") -> Any:
    """An encdec EncoderDecoderConfig for `obj`: one (returned as it is), a dict, or a transformers config."""
    from .config import EncoderDecoderConfig

    if isinstance(obj, EncoderDecoderConfig):
        return obj
    if isinstance(obj, dict):
        return EncoderDecoderConfig.from_dict(obj)
    if _is_foreign_config(obj):
        data = _plain_dict(obj)
        for role in ("encoder", "decoder"):
            if role in data and _is_foreign_config(getattr(obj, role, None)):
                data[role] = _plain_dict(getattr(obj, role))
        return EncoderDecoderConfig.from_dict(data)
    raise ConfigError(
        f"{what} is a {_describe(obj)}; expected an encdec.EncoderDecoderConfig, a dict or a transformers "
        "EncoderDecoderConfig"
    )


def check_json_config(data: Mapping[str, Any], where: str = "config") -> None:
    """Raise a ConfigError naming the first key whose value cannot be written as JSON, before anything is written."""
    for key, value in data.items():
        if isinstance(value, Mapping) and key in ("encoder", "decoder"):
            check_json_config(value, f"{where}.{key}")
            continue
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ConfigError(
                f"{where} key {key!r} is {value!r} ({_describe(value)}), which cannot be written to config.json "
                f"({e}); expected a JSON value (a string, number, bool, null, list or object)"
            ) from None
