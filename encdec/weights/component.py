"""One architecture's own folder (a `BertModel`, a `GPT2LMHeadModel`, ...) in transformers' layout; numpy only.

These are the bodies of the architecture classes' `save_pretrained` and
`from_pretrained`, once for the three ports. A folder holds config.json (the
architecture config with `architectures`) and the weights under the names
transformers gives that class alone: a bare model (`kind` "base": `BertModel`,
`RobertaModel`, `BertGenerationEncoder`, `GPT2Model`) has no prefix in PyTorch
and Flax, a model with an LM head (`kind` "lm": `BertLMHeadModel`,
`RobertaForCausalLM`, `BertGenerationDecoder`, `GPT2LMHeadModel`, `BartForCausalLM`) keeps its
body under the base prefix (`bert.`, `roberta.`, `transformer.`, `model.`); TF names always
carry the main layer. Reading goes through `convert.load_component`, the reader
`from_encoder_decoder_pretrained` uses for a half, so either naming loads as
either kind and what the folder lacks (an LM head, cross-attention) is drawn
and reported by name.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Iterable, Mapping, NamedTuple, Optional

from ..config import CONFIG_NAME, ArchConfig, load_arch_config
from ..errors import ConfigError
from . import names
from .names import ModelSpec

logger = logging.getLogger("encdec")

KINDS = ("base", "lm")

# The transformers (PyTorch) class of each architecture and kind; TF and Flax prefix it.
CLASS_NAMES = {
    ("bert", "base"): "BertModel",
    ("bert", "lm"): "BertLMHeadModel",
    ("roberta", "base"): "RobertaModel",
    ("roberta", "lm"): "RobertaForCausalLM",
    ("xlm-roberta", "base"): "XLMRobertaModel",
    ("xlm-roberta", "lm"): "XLMRobertaForCausalLM",
    ("camembert", "base"): "CamembertModel",
    ("camembert", "lm"): "CamembertForCausalLM",
    ("bert-generation", "base"): "BertGenerationEncoder",
    ("bert-generation", "lm"): "BertGenerationDecoder",
    ("electra", "base"): "ElectraModel",
    ("electra", "lm"): "ElectraForCausalLM",
    ("rembert", "base"): "RemBertModel",
    ("rembert", "lm"): "RemBertForCausalLM",
    ("gpt2", "base"): "GPT2Model",
    ("gpt2", "lm"): "GPT2LMHeadModel",
    # BART is a decoder only here: no bare class (transformers' BartModel is a whole encoder-decoder).
    ("bart", "lm"): "BartForCausalLM",
}
# Other names transformers gives a class in one framework (Flax's BERT decoder is `FlaxBertForCausalLM`).
OTHER_CLASS_NAMES = {"BertForCausalLM": ("bert", "lm")}


class Component(NamedTuple):
    """Which architecture class a port's class is."""

    model_type: str
    kind: str
    class_name: str  # transformers' name of the class in the port's framework (`TFBertModel`, ...)


def class_component(class_names: Iterable[str], prefix: str = "") -> Component:
    """The architecture class among `class_names` (a class and its bases, in MRO order), whose
    names are transformers' with the port's `prefix` ("", "TF" or "Flax")."""
    known = {**{name: key for key, name in CLASS_NAMES.items()}, **OTHER_CLASS_NAMES}
    names_seen = list(class_names)
    for name in names_seen:
        bare = name[len(prefix):] if name.startswith(prefix) else None
        if bare in known:
            return Component(*known[bare], name)
    raise ConfigError(
        f"{names_seen[0] if names_seen else '?'} is none of the architecture classes; expected a subclass of one of "
        f"{sorted(prefix + n for n in CLASS_NAMES.values())}"
    )


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ConfigError(f"kind {kind!r}; expected one of {KINDS}")


def _is_pooler(name: str) -> bool:
    return name.startswith("pooler.") or ".pooler." in name


def architecture_spec(config: ArchConfig, kind: str, pooler: bool = True) -> ModelSpec:
    """The parameters of one architecture class alone, named as transformers names them.

    `pooler=False` leaves out the pooler (`BertModel(config, add_pooling_layer=False)`);
    a model with an LM head never has one, as in transformers.
    """
    _check_kind(kind)
    if kind == "base" and config.model_type == "gpt2":
        # The decoder's body under its other naming: no prefix in PyTorch and Flax, `transformer/` in TF.
        return ModelSpec(names.component_alternate_params(config, "decoder"))
    spec = names.encoder_spec(config) if kind == "base" else names.decoder_spec(config)
    if kind == "lm" or not pooler:
        return ModelSpec([p for p in spec if not _is_pooler(p.name)], spec.tied)
    return spec


def _load_role(config: ArchConfig, kind: str) -> str:
    """The role whose reader loads `kind`: an encoder's for a bare BERT-like model, else a decoder's."""
    return "encoder" if kind == "base" and config.model_type != "gpt2" else "decoder"


def _from_role_name(name: str, config: ArchConfig, kind: str) -> Optional[str]:
    """A name of the role's spec as `architecture_spec` names it (None: the class has no such parameter)."""
    if kind == "base" and config.model_type == "gpt2":
        prefix = names.BASE_MODEL_PREFIX["gpt2"] + "."
        return name[len(prefix):] if name.startswith(prefix) else None
    return name


def check_model_type(config: ArchConfig, class_name: str, expected: str, where: str) -> None:
    """Refuse a config of another architecture than the class's, naming where it came from."""
    if config.model_type != expected:
        raise ConfigError(
            f"{where}: model_type {config.model_type!r} cannot be loaded into {class_name}; expected "
            f"model_type {expected!r}"
        )


class ComponentFolder(NamedTuple):
    """What `read_component_folder` returns."""

    config: ArchConfig
    state: dict  # canonical name (of architecture_spec) -> array, every stored name
    drawn: list  # names not in the folder, drawn by init_weights, in spec order
    ignored: list  # (file tensor name, why) of tensors the class has no place for


def read_component_folder(
    directory: str | os.PathLike,
    model_type: str,
    kind: str,
    class_name: str,
    *,
    fmt: Optional[str] = None,
    config: Optional[ArchConfig] = None,
    pooler: bool = True,
    init_seed: int = 0,
    **config_overrides: Any,
) -> ComponentFolder:
    """The body of an architecture class's `from_pretrained`: its config and canonical state.

    The config is the folder's config.json (or a copy of `config`), updated by
    `config_overrides`; its model_type must be `model_type`. The weights load in any
    of the four formats, with or without the base prefix. Parameters the folder
    lacks (an LM head when loading a bare model's folder into a decoder class,
    cross-attention with `add_cross_attention=True`) are drawn with
    `init_weights(config, init_seed)` and logged by name as a warning.
    Raises ConfigError (no or a wrong config) and CheckpointError (no weights,
    tensors that do not fit), each naming the file.
    """
    from .convert import load_component

    _check_kind(kind)
    directory = os.fspath(directory)
    where = os.path.join(directory, CONFIG_NAME)
    if config is not None:
        config = config.copy()
        where = f"the config given for {directory}"
    else:
        config = load_arch_config(directory)
    check_model_type(config, class_name, model_type, where)
    for key, value in config_overrides.items():
        setattr(config, key, value)
    config.validate()
    if kind == "lm" and not config.is_decoder:
        logger.warning(
            "%s: the config has is_decoder=False, so %s attends both ways; pass is_decoder=True for a causal decoder",
            directory, class_name,
        )
    spec = architecture_spec(config, kind, pooler)
    role = _load_role(config, kind)
    loaded, report = load_component(directory, config, role, fmt=fmt)
    state, ignored = {}, list(report.ignored)
    for name, array in loaded.items():
        own = _from_role_name(name, config, kind)
        if own in spec.by_name:
            state[own] = array
        else:
            ignored.append((name, f"{class_name} has no such parameter"))
    drawn = [p.name for p in spec if p.name not in state]
    if drawn:
        fresh = {_from_role_name(n, config, kind): a for n, a in names.init_weights(config, init_seed, role).items()}
        for name in drawn:
            state[name] = fresh[name]
        logger.warning(
            "%s: %d parameter(s) of %s are not in the checkpoint and were newly initialised "
            "(init_weights, seed %d): %s",
            directory, len(drawn), class_name, init_seed, ", ".join(drawn),
        )
    if ignored:
        logger.info("%s: %d tensor(s) of the checkpoint are not used by %s: %s", directory, len(ignored), class_name,
                    ", ".join(f"{name} ({why})" for name, why in ignored))
    return ComponentFolder(config, state, drawn, ignored)


def default_format(port: str, safe_serialization: bool) -> str:
    """The weight format a port's `save_pretrained` writes: safetensors, or the framework's own."""
    if port not in ("pt", "tf", "flax"):
        raise ConfigError(f"port {port!r}; expected 'pt', 'tf' or 'flax'")
    return "safetensors" if safe_serialization else port


def write_component_folder(
    directory: str | os.PathLike,
    state: Mapping[str, Any],
    config: ArchConfig,
    kind: str,
    architecture: str,
    fmt: str,
    shard_size: Optional[int | str] = None,
    *,
    pooler: bool = True,
) -> list[str]:
    """Write one architecture's folder: weights in `fmt` (sharded above `shard_size`) and config.json
    with `architectures = [architecture]`.

    Written to a temporary sibling and renamed into place (`io.atomic_directory`), so
    a failure leaves any previous folder there whole; weight files of a previous
    checkpoint (any format) are not carried over. Returns the weight file names.
    Raises CheckpointError (an unknown `fmt`, a state that does not fit the config).
    """
    from ..errors import CheckpointError
    from .convert import save_state
    from .formats import is_weight_file
    from .io import atomic_directory, parse_size

    spec = architecture_spec(config, kind, pooler)
    size = parse_size(shard_size) if shard_size is not None else None
    missing = [p.name for p in spec if p.name not in state]
    if missing:
        raise CheckpointError(
            f"cannot save {architecture}: the state lacks {len(missing)} parameter(s), e.g. {missing[:3]}; "
            "expected every name of architecture_spec(config)"
        )
    data = config.to_dict()
    data["architectures"] = [architecture]
    text = json.dumps(dict(sorted(data.items())), indent=2) + "\n"
    with atomic_directory(directory, keep=lambda name: not is_weight_file(name)) as tmp:
        written = save_state({p.name: state[p.name] for p in spec}, spec, tmp, fmt, shard_size=size)
        with open(os.path.join(tmp, CONFIG_NAME), "w", encoding="utf-8") as f:
            f.write(text)
    return list(written)

