"""Joining a pretrained encoder and decoder, and writing a model folder; numpy only.

These are the bodies of `from_encoder_decoder_pretrained` and `save_pretrained`,
once for the three ports: a port turns the canonical state `join_pretrained`
returns into its model (`from_state`), and hands `write_model_folder` its
`canonical_state()`.

The tokenizers travel with the model: `join_pretrained` notes on the joined config
which folders hold the encoder's and the decoder's tokenizer files
(`tokenizer_sources`; not written to config.json), and `write_model_folder` copies
them: the encoder's into the model folder, the decoder's into its
`decoder_tokenizer/` subfolder when it differs (the layout `encdec.tokenization.
load_tokenizers` reads).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from typing import Any, Mapping, NamedTuple, Optional

import numpy as np

from ..config import (
    GENERATION_CONFIG_NAME,
    ArchConfig,
    EncoderDecoderConfig,
    GenerationConfig,
    load_arch_config,
)
from ..errors import CheckpointError, ConfigError
from ..loading import (
    GENERIC_CONFIG_DEFAULTS,
    as_arch_config,
    as_encoder_decoder_config,
    check_config_kwargs,
    LoadingOptions,
    check_json_config,
    split_loading_kwargs,
    split_role_kwargs,
)
from .names import ModelSpec, init_weights, model_spec

logger = logging.getLogger("encdec")

ROLES = ("encoder", "decoder")
# The config attribute (outside config.json: not in to_dict) naming the tokenizer folders of each role.
TOKENIZER_SOURCES = "_tokenizer_sources"
ARCHITECTURES = ("EncoderDecoderModel",)  # what transformers writes for every port's model


@dataclasses.dataclass(frozen=True)
class GivenHalf:
    """An encoder or decoder the caller gives as a built module instead of a folder.

    `config` is that module's architecture config. `state` is its canonical state
    (names within the half, e.g. "embeddings.word_embeddings.weight", as
    `names.encoder_spec` / `names.decoder_spec` list them): it goes into the joined
    state. With `state=None` the port keeps the module's own weights, and the
    half's names are left out of the joined state.
    """

    config: ArchConfig
    state: Optional[Mapping[str, np.ndarray]] = None


class JoinedPretrained(NamedTuple):
    """What `join_pretrained` returns (unpacks as `config, state, drawn`)."""

    config: EncoderDecoderConfig
    state: dict  # canonical name -> array: every stored name of model_spec(config), but a GivenHalf's without state
    drawn: list  # canonical names drawn by init_weights (not in any checkpoint nor given), in spec order


def _role_config(role: str, path: Optional[str], options: dict[str, Any]) -> ArchConfig:
    config = options.pop("config", None)
    config = as_arch_config(config, f"{role}_config").copy() if config is not None else load_arch_config(path)
    check_config_kwargs(options, config, role, prefix=f"{role}_",
                        elsewhere=[*EncoderDecoderConfig.defaults, *GENERIC_CONFIG_DEFAULTS])
    for key, value in options.items():
        setattr(config, key, value)
    if role == "encoder" and (config.is_decoder or config.add_cross_attention):
        logger.info("%s: loading a decoder config as the encoder; cross-attention and the causal mask are off", path)
        config.is_decoder = False
        config.add_cross_attention = False
    if role == "decoder" and not (config.is_decoder and config.add_cross_attention):
        logger.info("%s: loading as a decoder; cross-attention layers are added and drawn at random", path)
        config.is_decoder = True
        config.add_cross_attention = True
    return config


def _save_given_modules(kwargs: dict[str, Any], directory: str) -> dict[str, str]:
    """Pop `encoder_model=` / `decoder_model=` modules that are not the port's own (a transformers
    PyTorch model, an architecture model of a port) out of `kwargs`, save each into a subfolder of
    `directory` with its `save_pretrained`, and return {role: folder}: their weights then load through
    the core like any checkpoint's."""
    folders = {}
    for role in ROLES:
        module = kwargs.get(f"{role}_model")
        if module is None:
            continue
        if not (callable(getattr(module, "save_pretrained", None)) and getattr(module, "config", None) is not None):
            cls = type(module)
            raise ConfigError(
                f"{role}_model is a {cls.__module__}.{cls.__qualname__}; expected a model of this port "
                "(e.g. BertModel) or a transformers PyTorch model (a PreTrainedModel with save_pretrained)"
            )
        folders[role] = os.path.join(directory, role)
        kwargs.pop(f"{role}_model").save_pretrained(folders[role])
    return folders


def join_pretrained(encoder_path: Optional[str | os.PathLike], decoder_path: Optional[str | os.PathLike],
                    kwargs: Mapping[str, Any], init_seed: int = 0, *,
                    given: Optional[Mapping[str, GivenHalf]] = None) -> JoinedPretrained:
    """Join a pretrained encoder folder and a pretrained decoder folder (any format) into one canonical state.

    A module given as `encoder_model=` / `decoder_model=` in `kwargs` (one the port
    does not keep itself, see `_save_given_modules`) is saved to a temporary folder
    and read from there. The rest is `_join_folders`'.
    """
    kwargs = {k: v for k, v in kwargs.items() if not (v is None and k in ("encoder_model", "decoder_model"))}
    if not any(f"{role}_model" in kwargs for role in ROLES):
        return _join_folders(encoder_path, decoder_path, kwargs, init_seed, given=given)
    with tempfile.TemporaryDirectory(prefix="encdec-given-") as tmp:
        folders = _save_given_modules(kwargs, tmp)
        return _join_folders(folders.get("encoder", encoder_path), folders.get("decoder", decoder_path),
                             kwargs, init_seed, given=given)


def _join_folders(encoder_path: Optional[str | os.PathLike], decoder_path: Optional[str | os.PathLike],
                  kwargs: Mapping[str, Any], init_seed: int = 0, *,
                  given: Optional[Mapping[str, GivenHalf]] = None) -> JoinedPretrained:
    """Join a pretrained encoder folder and a pretrained decoder folder (any format) into one canonical state.

    `kwargs` (not changed) are `from_encoder_decoder_pretrained`'s: `encoder_*` /
    `decoder_*` options update that half's config (`encoder_config=` /
    `decoder_config=` replace it), the others update the joined config. The encoder
    config is made a plain encoder, the decoder a cross-attending decoder. `given`
    maps "encoder"/"decoder" to a GivenHalf for a half built elsewhere (its path is
    then not read). What no checkpoint holds (cross-attention, often the LM head,
    `enc_to_dec_proj`) is drawn with `init_weights(config, init_seed)` and logged by
    name as a warning.

    Raises ConfigError (a half with neither path nor given half; a given state with
    unknown names; a kwarg that is no attribute of the config it would set) and
    whatever loading raises (CheckpointError, ConfigError).
    """
    from .convert import load_component

    kwargs = dict(kwargs)
    given = dict(given or {})
    unknown = sorted(set(given) - set(ROLES))
    if unknown:
        raise ConfigError(f"given half {unknown}; expected 'encoder' or 'decoder'")
    parts = split_role_kwargs(kwargs)
    configs: dict[str, ArchConfig] = {}
    paths: dict[str, str] = {}
    for role, path in (("encoder", encoder_path), ("decoder", decoder_path)):
        options = parts[role]
        if role in given:
            if options:
                raise ConfigError(
                    f"{role} options {sorted(options)} with a given {role}; expected them set on its config"
                )
            configs[role] = given[role].config
            continue
        if path is None:
            raise ConfigError(f"no {role} given; expected {role}_pretrained_model_name_or_path or {role}_model=")
        paths[role] = os.fspath(path)
        configs[role] = _role_config(role, paths[role], options)
    check_config_kwargs(kwargs, EncoderDecoderConfig.defaults, "encoder-decoder")
    config = EncoderDecoderConfig.from_encoder_decoder_configs(configs["encoder"], configs["decoder"], **kwargs)

    spec = model_spec(config)
    stored = set(spec.by_name)
    # With tie_encoder_decoder one tensor serves both halves under the encoder's stored name. As in
    # transformers, the decoder's value wins: the decoder half is read after the encoder half, and each
    # of its shared names writes the stored (encoder) name it is tied to.
    shared = dict(spec.tied_pairs(shared_with_encoder=True))
    drawn_from = init_weights(config, seed=init_seed)
    state = dict(drawn_from)
    drawn: set[str] = set()
    for role in ROLES:
        prefix = role + "."
        if role in given:
            half = given[role].state
            if half is None:
                # The given module keeps its weights, the shared ones included.
                for name in [n for n in state if n.startswith(prefix)]:
                    del state[name]
                if role == "decoder":
                    for source in shared.values():
                        state.pop(source, None)
                continue
            extra = sorted(f"{prefix}{n}" for n in half if f"{prefix}{n}" not in stored | set(shared))
            if extra:
                raise ConfigError(
                    f"the given {role} state has {len(extra)} name(s) the joined model does not store, e.g. "
                    f"{extra[:3]}; expected names of names.{role}_spec"
                )
            for name, array in half.items():
                state[shared.get(prefix + name, prefix + name)] = np.asarray(array)
            drawn.update(n for n in stored if n.startswith(prefix) and n[len(prefix):] not in half)
            continue
        loaded, report = load_component(paths[role], getattr(config, role), role)
        if report.ignored:
            # What the half's checkpoint holds that the joined model has no place for (a task head, a pooler,
            # the encoder half of a BART checkpoint), by name.
            logger.info("%s: %d tensor(s) of the %s checkpoint are not used: %s", paths[role], len(report.ignored),
                        role, ", ".join(f"{name} ({why})" for name, why in report.ignored))
        for name, array in loaded.items():
            if prefix + name in stored:
                state[prefix + name] = array
            elif prefix + name in shared:
                state[shared[prefix + name]] = array
                drawn.discard(shared[prefix + name])
        drawn.update(prefix + name for name in report.missing if prefix + name in stored)
    drawn.update(n for n in stored if n.startswith("enc_to_dec_proj."))
    set_tokenizer_sources(config, paths.get("encoder"), paths.get("decoder"))
    drawn_list = [p.name for p in spec if p.name in drawn]
    if drawn_list:
        logger.warning(
            "%d parameter(s) are not in the pretrained checkpoints and were newly initialised "
            "(init_weights, seed %d): %s",
            len(drawn_list), init_seed, ", ".join(drawn_list),
        )
    return JoinedPretrained(config, state, drawn_list)


class ModelFolder(NamedTuple):
    config: EncoderDecoderConfig
    state: dict
    generation_config: Optional[GenerationConfig]


def read_model_folder(directory: str | os.PathLike, *, fmt: Optional[str] = None,
                      config: Optional[EncoderDecoderConfig] = None, **config_kwargs: Any) -> ModelFolder:
    """The body of every port's `from_pretrained`: (config, canonical state, generation config or None).

    Finishes a save into `directory` that a crash interrupted before anything is read.
    `config` (copied; encdec's, a dict or a transformers config) replaces the folder's
    config.json; `config_kwargs` set its keys (a ConfigError for one the config does not have).
    The config must fit the files' tensor list before the parameter table is built,
    so a config that asks for more layers than the files hold allocates nothing. The
    folder's tokenizers are noted on the config, so saving the model elsewhere carries them.
    """
    from .convert import load_state
    from .io import recover_directory

    directory = os.fspath(directory)
    recover_directory(directory)
    if config is not None:
        config = as_encoder_decoder_config(config).copy()
    else:
        config = EncoderDecoderConfig.from_pretrained(directory)
    check_config_kwargs(config_kwargs, config, "encoder-decoder")
    for key, value in config_kwargs.items():
        setattr(config, key, value)
    state, _report = load_state(directory, config, fmt=fmt)
    generation_config = None
    if os.path.isfile(os.path.join(directory, GENERATION_CONFIG_NAME)):
        generation_config = GenerationConfig.from_pretrained(directory)
    set_model_folder_tokenizers(config, directory)
    return ModelFolder(config, state, generation_config)


def read_pretrained(directory: str | os.PathLike, port: str, kwargs: Mapping[str, Any], *,
                    fmt: Optional[str] = None, dtype: Any = None,
                    config: Optional[EncoderDecoderConfig] = None) -> tuple[LoadingOptions, ModelFolder]:
    """The start of every port's `from_pretrained`: `port`'s loading options (`dtype`, when given,
    among them) taken out of `kwargs` (not changed; `encdec.loading.split_loading_kwargs`), and the
    folder read with the rest as config keys (`read_model_folder`)."""
    kwargs = dict(kwargs)
    if dtype is not None:
        kwargs["dtype"] = dtype
    options = split_loading_kwargs(kwargs, port)
    return options, read_model_folder(directory, fmt=fmt, config=config, **kwargs)


def set_tokenizer_sources(config: EncoderDecoderConfig, encoder: Optional[str | os.PathLike],
                          decoder: Optional[str | os.PathLike]) -> None:
    """Note on `config` the folders whose tokenizer files `write_model_folder` copies (those that hold
    a tokenizer; a None or a folder without one is left out). The note is not part of config.json."""
    from ..tokenization import has_tokenizer

    sources = {role: os.fspath(path) for role, path in (("encoder", encoder), ("decoder", decoder))
               if path is not None and os.path.isdir(path) and has_tokenizer(path)}
    object.__setattr__(config, TOKENIZER_SOURCES, sources)


def set_model_folder_tokenizers(config: EncoderDecoderConfig, directory: str | os.PathLike) -> None:
    """Note the tokenizers of a model folder (its own, and `decoder_tokenizer/`'s) on `config`, so that
    saving a model read from `directory` elsewhere carries them."""
    from ..tokenization import DECODER_TOKENIZER_DIR

    sub = os.path.join(directory, DECODER_TOKENIZER_DIR)
    set_tokenizer_sources(config, directory, sub if os.path.isdir(sub) else directory)


def tokenizer_sources(config: EncoderDecoderConfig) -> dict:
    """{"encoder": folder, "decoder": folder} of the tokenizers noted on `config` (either may be absent)."""
    return dict(config.__dict__.get(TOKENIZER_SOURCES) or {})


def _copy_tokenizers(sources: Mapping[str, str], target: str) -> list[str]:
    from ..tokenization import DECODER_TOKENIZER_DIR, copy_tokenizer_files, same_tokenizer

    encoder, decoder = sources.get("encoder"), sources.get("decoder")
    written = []
    if encoder is not None:
        written += copy_tokenizer_files(encoder, target)
    if decoder is not None and (encoder is None or not same_tokenizer(encoder, decoder)):
        if encoder is None:
            logger.warning("%s: the encoder's checkpoint has no tokenizer; only the decoder's is saved, in %s/",
                           target, DECODER_TOKENIZER_DIR)
        sub = os.path.join(target, DECODER_TOKENIZER_DIR)
        written += [f"{DECODER_TOKENIZER_DIR}/{n}" for n in copy_tokenizer_files(decoder, sub)]
    return written


def write_model_folder(directory: str | os.PathLike, state: Mapping[str, Any], spec: ModelSpec,
                       config: EncoderDecoderConfig, generation_config: Optional[GenerationConfig],
                       fmt: str = "safetensors", shard_size: Optional[int | str] = None, *,
                       tokenizer_from: Optional[Mapping[str, str]] = None) -> list[str]:
    """Write a model folder: weights in `fmt` (sharded above `shard_size`), config.json with
    `architectures = ["EncoderDecoderModel"]`, and generation_config.json (when given).

    The folder is written to a temporary sibling and renamed into place, so a failure
    leaves any previous folder there whole; other files of a previous folder are
    kept, but its weight files (any format) are not, since a stale file of another
    format would shadow the new one. The tokenizers of `tokenizer_from` (default:
    `tokenizer_sources(config)`, what `join_pretrained` noted) are copied in, and then
    the previous folder's tokenizer files are not kept. `config` is not changed.
    Returns the weight file names written. Raises ConfigError (a bad `shard_size`), CheckpointError (an
    unknown `fmt`, a state that does not fit `spec`), and a ConfigError for a config value that is not
    JSON, before anything is written.
    """
    from .convert import save_state
    from .formats import is_weight_file
    from ..tokenization import DECODER_TOKENIZER_DIR, TOKENIZER_FILES
    from .io import atomic_directory, parse_size

    check_json_config(config.to_dict())
    if generation_config is not None:
        check_json_config(generation_config.to_dict(), "generation config")
    size = parse_size(shard_size) if shard_size is not None else None
    missing = [p.name for p in spec if p.name not in state]
    if missing:
        raise CheckpointError(
            f"the state lacks {len(missing)} stored tensor(s), e.g. {missing[:3]}; expected every name of the spec"
        )
    sources = dict(tokenizer_from if tokenizer_from is not None else tokenizer_sources(config))
    tokenizer_names = set(TOKENIZER_FILES) | {DECODER_TOKENIZER_DIR}

    def keep(name: str) -> bool:
        return not is_weight_file(name) and not (sources and name in tokenizer_names)

    config = config.copy()
    config.architectures = list(ARCHITECTURES)
    with atomic_directory(directory, keep=keep) as tmp:
        written = save_state(dict(state), spec, tmp, fmt, shard_size=size)
        _copy_tokenizers(sources, tmp)
        config.save_pretrained(tmp)
        if generation_config is not None:
            generation_config.save_pretrained(tmp)
    return list(written)
