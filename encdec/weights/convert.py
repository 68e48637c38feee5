"""Loading, saving and converting checkpoints through the parameter table of `names.py`.

A checkpoint tensor is looked up by its native name in the spec (canonical name
for safetensors and .bin, TF name for h5, Flax path for msgpack), checked for
shape, and moved to or from the canonical (PyTorch) layout by its `ParamSpec`.
The table is the only source of parameter names (the one edit is a format's
own spelling: the `:0` of TF names and the dots of Flax keys in safetensors
files), and a tensor that is not in it is either ignored for a stated reason
or an error.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from typing import Any, Callable, Iterable

import numpy as np

from ..config import (
    CONFIG_NAME,
    GENERATION_CONFIG_NAME,
    ArchConfig,
    EncoderDecoderConfig,
    GenerationConfig,
)
from ..errors import CheckpointError, ConfigError
from . import names
from .formats import (
    FORMATS,
    LazyTensor,
    Reader,
    as_dtype,
    c_contiguous,
    is_floating,
    is_weight_file,
    open_checkpoint,
    write_checkpoint,
)
from .io import atomic_directory, parse_size, recover_directory
from .names import ModelSpec, ParamSpec, TiedSpec

logger = logging.getLogger("encdec")

# The naming and layout each format's native tensors use.
LAYOUT = {"safetensors": "pt", "pt": "pt", "tf": "tf", "flax": "flax"}


def to_native(state: dict[str, np.ndarray], spec: ModelSpec, layout: str) -> dict[str, np.ndarray]:
    """A canonical state in a framework's names and layouts ("pt", "tf" or "flax"), e.g. to fill a model."""
    return {p.native_name(layout): p.to_native(state[p.name], layout) for p in spec if p.name in state}


def from_native(tensors: dict[str, np.ndarray], spec: ModelSpec, layout: str) -> dict[str, np.ndarray]:
    """The canonical state of a framework's named tensors; a name or shape the spec does not know is an error."""
    index = {p.native_name(layout): p for p in spec}
    out = {}
    for name, value in tensors.items():
        p = index.get(name)
        if p is None:
            raise CheckpointError(f"{name!r} is not a {layout} parameter name of this model")
        if tuple(np.shape(value)) != p.shape_in(layout):
            raise CheckpointError(
                f"{name!r} has shape {list(np.shape(value))}, the config implies {list(p.shape_in(layout))}"
            )
        out[p.name] = p.to_canonical(np.asarray(value), layout)
    return out


def _reader_layout(reader: Reader) -> str:
    """The layout of the names in a reader; a safetensors file says which in its metadata."""
    if reader.format == "safetensors":
        return {"tf": "tf", "flax": "flax"}.get(reader.metadata.get("format", "pt"), "pt")
    return LAYOUT[reader.format]


def _lookup_name(native: str, reader: Reader) -> str:
    """A reader's name as the table spells it in that layout.

    TF-format safetensors keep the `:0` suffix, Flax-format ones join the path
    with dots (flax's `flatten_dict(sep=".")`); the table uses neither.
    """
    if reader.format == "safetensors":
        fmt = reader.metadata.get("format", "pt")
        if fmt == "tf":
            return re.sub(r":\d+$", "", native)
        if fmt == "flax" and "/" not in native:
            return native.replace(".", "/")
    return native


@dataclasses.dataclass
class LoadReport:
    """What a load did: the tensors used, ignored (with why) and missing."""

    format: str
    files: list[str]
    used: list[str] = dataclasses.field(default_factory=list)
    ignored: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    missing: list[str] = dataclasses.field(default_factory=list)

    def summary(self) -> str:
        files = ", ".join(os.path.basename(f) for f in self.files)
        lines = [f"loaded {len(self.used)} tensors from {files} ({self.format})"]
        if self.ignored:
            lines.append(f"ignored {len(self.ignored)}:")
            lines += [f"  {name}: {reason}" for name, reason in self.ignored]
        if self.missing:
            lines.append(f"newly initialised (not in the checkpoint) {len(self.missing)}:")
            lines += [f"  {name}" for name in self.missing]
        return "\n".join(lines)


@dataclasses.dataclass
class _Match:
    """Where each parameter of a spec comes from in a reader, and what is left over."""

    layout: str
    sources: dict[str, str]  # canonical name -> reader name
    ignored: list[tuple[str, str]]
    unexpected: list[str]
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]]  # reader name, file shape, expected
    not_float: list[tuple[str, np.dtype]]
    duplicated: list[tuple[str, str, str]]  # canonical, first reader name, second
    missing: list[str]
    tied_copies: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)  # reader name, source, why
    tied_held: list[str] = dataclasses.field(default_factory=list)  # canonical tied names the reader holds
    direct: set[str] = dataclasses.field(default_factory=set)  # parameters the reader holds under their own name

    def problems(self) -> bool:
        return bool(self.unexpected or self.mismatched or self.not_float or self.duplicated or self.missing)


def _match(
    reader: Reader,
    spec: ModelSpec,
    aliases: dict[str, ParamSpec] | None = None,
    ignore: Callable[[str], str | None] | None = None,
) -> _Match:
    """Pair each reader tensor with a parameter of `spec` (or an alias), checking shapes and dtypes."""
    layout = _reader_layout(reader)
    index = {p.native_name(layout): p for p in spec}
    for alias, p in (aliases or {}).items():
        index.setdefault(alias, p)
    # Tied names a file of this layout can hold: every one in a state dict; in TF and Flax files
    # the decoder's copies of tensors shared by tie_encoder_decoder (the frameworks' own variables).
    tied = {
        (t.name if layout == "pt" else t.param.native_name(layout)): t
        for t in spec.tied
        if layout == "pt" or t.param is not None
    }
    match = _Match(layout, {}, [], [], [], [], [], [])
    for name in reader.names():
        key = _lookup_name(name, reader)
        info = reader.info(name)
        p = index.get(key)
        if p is None:
            reason = None
            t = tied.get(key)
            if t is not None:
                reason = f"tied to {t.source}: {t.reason}"
                if tuple(info.shape) == spec.param(t.name).shape_in(layout):
                    match.tied_copies.append((name, t.source, t.reason))
                    match.tied_held.append(t.name)
            if reason is None:
                reason = names.ignored_reason(key)
            if reason is None and ignore is not None:
                reason = ignore(key)
            if reason is None:
                match.unexpected.append(name)
            else:
                match.ignored.append((name, reason))
            continue
        expected = p.shape_in(layout)
        if tuple(info.shape) != expected:
            match.mismatched.append((name, tuple(info.shape), expected))
            continue
        if not is_floating(info.dtype):
            match.not_float.append((name, info.dtype))
            continue
        if p.name in match.sources:
            match.duplicated.append((p.name, match.sources[p.name], name))
            continue
        match.sources[p.name] = name
    match.direct = set(match.sources)
    for name, source, _ in match.tied_copies:
        # A checkpoint may keep only the tied name of a shared tensor (transformers drops one
        # name of each shared pair from safetensors); it then holds the source's value.
        if source not in match.sources:
            match.sources[source] = name
            match.ignored = [(n, r) for n, r in match.ignored if n != name]
    match.missing = [p.name for p in spec if p.name not in match.sources]
    return match


def _check_tied_copies(reader: Reader, match: _Match) -> None:
    """A tied name stored next to its source must hold the same values, or the config is wrong."""
    for name, source, reason in match.tied_copies:
        stored = match.sources.get(source)
        if stored is None or stored == name:
            continue
        same_storage = getattr(reader, "same_view", None)
        if same_storage is not None and same_storage(name, stored):
            continue
        a, b = reader.read(name), reader.read(stored)
        if a.shape != b.shape or a.tobytes() != b.tobytes():
            raise CheckpointError(
                f"{_where(reader, name)}: tensor {name!r} should be the same tensor as {stored!r} "
                f"({reason}, says the config) but holds different values; expected equal tensors, "
                "or a config that does not tie them"
            )


def _listing(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(repr(i) for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _where(reader: Reader, name: str | None = None) -> str:
    if name is not None and name in reader:
        return reader.info(name).file
    return reader.files[0] if len(reader.files) == 1 else os.path.dirname(reader.files[0])


def _raise_problems(reader: Reader, match: _Match, spec: ModelSpec, allow_missing=None, check_missing=True) -> None:
    """Raise a CheckpointError for the first kind of problem a match found, naming tensors and file."""
    if match.mismatched:
        lines = [
            f"tensor {name!r} in {_where(reader, name)} has shape {list(got)}, the config implies {list(want)}"
            for name, got, want in match.mismatched
        ]
        raise CheckpointError(
            "the checkpoint does not fit the config (" + "; ".join(lines[:5])
            + (f"; and {len(lines) - 5} more" if len(lines) > 5 else "") + ")"
        )
    if match.not_float:
        name, dtype = match.not_float[0]
        raise CheckpointError(
            f"tensor {name!r} in {_where(reader, name)} has dtype {dtype}; expected a floating-point parameter"
        )
    if match.duplicated:
        canonical, first, second = match.duplicated[0]
        raise CheckpointError(
            f"{_where(reader)}: both {first!r} and {second!r} hold parameter {canonical!r}; expected one"
        )
    if match.unexpected:
        example = spec.params[0].native_name(match.layout) if spec.params else "?"
        raise CheckpointError(
            f"{_where(reader, match.unexpected[0])}: {len(match.unexpected)} tensor(s) match no parameter of the "
            f"model: {_listing(match.unexpected)}; expected {match.layout} names like {example!r}"
        )
    if check_missing:
        missing = [n for n in match.missing if not (allow_missing and allow_missing(n))]
        if missing:
            spec_by_name = spec.by_name
            shown = [f"{n} ({spec_by_name[n].native_name(match.layout)})" if match.layout != "pt" else n for n in missing]
            raise CheckpointError(
                f"{_where(reader)}: {len(missing)} parameter(s) of the model are not in the checkpoint: "
                f"{_listing(shown)}"
            )


def _report(reader: Reader, match: _Match, allow_missing=None) -> LoadReport:
    return LoadReport(
        format=reader.format,
        files=list(reader.files),
        used=list(match.sources),
        ignored=list(match.ignored),
        missing=[n for n in match.missing if allow_missing and allow_missing(n)],
    )


def _read_canonical(reader: Reader, spec: ModelSpec, match: _Match, name: str) -> np.ndarray:
    p = spec.by_name[name]
    return p.to_canonical(reader.read(match.sources[name]), match.layout)


def check_state(reader: Reader, spec: ModelSpec) -> _Match:
    """Match a reader against a spec without reading any tensor (for `encdec inspect`)."""
    return _match(reader, spec)


def check_config_fits(reader: Reader, config: EncoderDecoderConfig | ArchConfig) -> None:
    """Refuse a config whose layer count the files cannot hold, before its parameter table is built.

    Every layer has several tensors, so a config with more layers than the
    checkpoint has tensors cannot match it; checked first because building the
    table of a config that declares, say, 10**12 layers would not finish.
    """
    arch = [("encoder", config.encoder), ("decoder", config.decoder)] if isinstance(config, EncoderDecoderConfig) else [
        ("model", config)
    ]
    for role, cfg in arch:
        layers = cfg.num_hidden_layers
        if layers > len(reader):
            raise CheckpointError(
                f"{_where(reader)}: the config's {role} declares {layers} layers, but the checkpoint holds only "
                f"{len(reader)} tensors; expected a config that matches the checkpoint"
            )


def warn_non_finite(state: dict[str, np.ndarray], where: str) -> list[str]:
    """Log a warning naming every floating-point tensor of `state` that holds NaN or infinity; return the names."""
    bad = [name for name, array in state.items() if is_floating(array.dtype) and not np.isfinite(array).all()]
    if bad:
        logger.warning(
            "%s: %d tensor(s) hold NaN or infinite values, so outputs that use them will be NaN: %s",
            where, len(bad), _listing(bad, limit=20),
        )
    return bad


def load_state(
    directory: str | os.PathLike,
    spec: ModelSpec | EncoderDecoderConfig,
    *,
    fmt: str | None = None,
    allow_missing: Callable[[str], bool] | None = None,
) -> tuple[dict[str, np.ndarray], LoadReport]:
    """Every stored parameter of `spec` from a checkpoint folder, canonical names and layouts.

    Strict: every checkpoint tensor is used or ignored for a stated reason (tied
    copies, buffers), shapes must match, and a parameter not in the checkpoint
    is an error unless `allow_missing(name)` says it may be initialised instead
    (then it is listed in the report). Tied names are not returned; expand them
    with `names.expand_tied`. Given a config instead of a spec, its layer count is
    checked against the files before the spec is built (`check_config_fits`).
    A folder left without a checkpoint by a killed save is recovered first
    (`io.recover_directory`). Non-finite tensors are named in a logged warning.
    """
    recover_directory(directory)
    with open_checkpoint(directory, fmt) as reader:
        if isinstance(spec, EncoderDecoderConfig):
            check_config_fits(reader, spec)
            spec = names.model_spec(spec)
        match = _match(reader, spec)
        _raise_problems(reader, match, spec, allow_missing)
        _check_tied_copies(reader, match)
        state = {name: _read_canonical(reader, spec, match, name) for name in match.sources}
        warn_non_finite(state, _where(reader))
        return state, _report(reader, match, allow_missing)


# ---------------------------------------------------------------------------
# A pretrained encoder or decoder on its own (BertModel, GPT2LMHeadModel, ...)

# Heads of pretrained checkpoints that an encoder-decoder component has no place for.
_ENCODER_FOREIGN = re.compile(
    r"^(?:(?:bert|roberta|electra)[./])?(?:cls|lm_head|mlm___cls|nsp___cls|qa_outputs|classifier"
    r"|generator_predictions|generator_lm_head|discriminator_predictions)(?:[./]|$)"
)
_DECODER_FOREIGN = (
    (re.compile(r"(?:^|[./])pooler[./]"), "the pooler: a decoder has none"),
    (re.compile(r"(?:^|[./])(?:cls[./]seq_relationship|nsp___cls)[./]"), "the next-sentence head: a decoder has none"),
)


def _component_specs(cfg: ArchConfig, role: str) -> tuple[ModelSpec, list[ParamSpec]]:
    """The spec of a component, and the same body parameters named with the base prefix toggled."""
    if role not in ("encoder", "decoder"):
        raise ConfigError(f"role {role!r}; expected 'encoder' or 'decoder'")
    spec = names.encoder_spec(cfg) if role == "encoder" else names.decoder_spec(cfg)
    return spec, names.component_alternate_params(cfg, role)


def load_component(
    directory: str | os.PathLike, arch_config: ArchConfig, role: str, *, fmt: str | None = None
) -> tuple[dict[str, np.ndarray], LoadReport]:
    """A pretrained encoder or decoder, for `from_encoder_decoder_pretrained`.

    Names are those of `names.encoder_spec(arch_config)` / `names.decoder_spec(arch_config)`
    (no `encoder.`/`decoder.` prefix). Checkpoints with or without the base
    prefix (`bert.`, `roberta.`, `transformer.`) load either way; an LM head
    loaded as encoder and a pooler loaded as decoder are ignored with a reason;
    parameters the checkpoint lacks (cross-attention, a head) are returned in
    `report.missing` for the caller to initialise, not raised.
    """
    recover_directory(directory)
    with open_checkpoint(directory, fmt) as reader:
        check_config_fits(reader, arch_config)
        spec = _component_specs(arch_config, role)[0]
        match = check_component(reader, arch_config, role)
        _raise_problems(reader, match, spec, check_missing=False)
        _check_tied_copies(reader, match)
        state = {name: _read_canonical(reader, spec, match, name) for name in match.sources}
        warn_non_finite(state, _where(reader))
        report = _report(reader, match)
        report.missing = list(match.missing)
        return state, report


def check_component(reader: Reader, arch_config: ArchConfig, role: str) -> _Match:
    """Match a single encoder/decoder checkpoint against a component spec, reading no tensor."""
    spec, other = _component_specs(arch_config, role)
    layout = _reader_layout(reader)
    aliases: dict[str, ParamSpec] = {}
    for alt in other:
        # TF names always carry the main layer, so they pair the two namings.
        primary = spec.by_tf.get(alt.tf_name)
        if primary is None or primary.shape != alt.shape:
            raise AssertionError(f"no parameter of the {role} spec pairs with {alt.name}")
        aliases[alt.native_name(layout)] = primary

    def ignore(name: str) -> str | None:
        if role == "encoder" and _ENCODER_FOREIGN.search(name):
            return "a task head of the pretrained checkpoint: an encoder has none"
        if role == "decoder":
            for pattern, reason in _DECODER_FOREIGN:
                if pattern.search(name):
                    return reason
        return None

    return _match(reader, spec, aliases, ignore)


# ---------------------------------------------------------------------------
# Saving and converting


def _cast(dtype: np.dtype | None, value_dtype: np.dtype) -> np.dtype:
    return dtype if dtype is not None and is_floating(value_dtype) else value_dtype


def _tied_to_write(spec: ModelSpec, fmt: str, tied_names: Iterable[str] | None) -> list[TiedSpec]:
    """The tied names a file of `fmt` holds next to their sources.

    A `pytorch_model.bin` holds the whole state dict, every tied name sharing its
    source's storage, as torch.save writes it. Other formats hold the tied names
    in `tied_names` that they can name; by default, the decoder's copies of the
    tensors shared by `tie_encoder_decoder` (see `save_state`).
    """
    if fmt == "pt":
        return list(spec.tied)
    if tied_names is None:
        return [t for t in spec.tied if t.shared_with_encoder]
    held = set(tied_names)
    return [t for t in spec.tied if t.shared_with_encoder and t.name in held]


def _native_tensors(
    state: dict[str, Any],
    spec: ModelSpec,
    fmt: str,
    dtype: np.dtype | None,
    tied_names: Iterable[str] | None = None,
    skip: Iterable[str] = (),
) -> dict[str, Any]:
    """The tensors of `fmt`'s file: native names and layouts, each loaded (and cast) only when written.

    `skip` names stored parameters the file leaves out because it holds them
    under a tied name only (written among `tied_names`).
    """
    layout = LAYOUT[fmt]
    tied = _tied_to_write(spec, fmt, tied_names)
    written_tied = {t.name for t in tied}
    skipped = {
        name for name in skip
        if any(t.source == name and t.name in written_tied for t in tied)
    }
    out: dict[str, Any] = {}
    by_source: dict[str, Any] = {}
    for p in spec:
        if p.name not in state:
            raise CheckpointError(f"cannot save: parameter {p.name!r} is not in the state to save")
        value = state[p.name]
        shape = tuple(value.shape)
        if shape != p.shape:
            raise CheckpointError(
                f"cannot save: parameter {p.name!r} has shape {list(shape)}, the config implies {list(p.shape)}"
            )
        target = _cast(dtype, value.dtype)

        def load(p=p, value=value, target=target) -> np.ndarray:
            array = value.load() if isinstance(value, LazyTensor) else np.asarray(value)
            return c_contiguous(p.to_native(array.astype(target, copy=False), layout))

        lazy = LazyTensor(p.shape_in(layout), target, load)
        by_source[p.name] = lazy
        if p.name not in skipped:
            out[p.native_name(layout)] = lazy
    for t in tied:
        source = by_source[t.source]
        if fmt == "pt":
            out[t.name] = source  # the same object: one shared storage in the .bin
        else:
            # A copy of its own (a separate entry, so that shards count it).
            out[spec.native_name(t.name, layout)] = LazyTensor(source.shape, source.dtype, source.load)
    return out


def save_state(
    state: dict[str, Any],
    spec: ModelSpec,
    directory: str | os.PathLike,
    fmt: str,
    *,
    shard_size: int | str | None = None,
    dtype: str | np.dtype | None = None,
    tied_names: Iterable[str] | None = None,
) -> list[str]:
    """Write the weights of `state` (canonical names; arrays or LazyTensors) in `fmt` into `directory`.

    TF and Flax names and layouts come from the spec; safetensors metadata is
    `{"format": "pt"}`. Returns the file names.

    Tied tensors. An LM head tied to the word embeddings is stored once (its
    source), except in a `.bin`, which holds the whole state dict with the tied
    name sharing the source's storage, as transformers writes both. The tensors
    a `tie_encoder_decoder` model shares between encoder and decoder are written
    under both names by default (`tied_names=None`), equal copies in safetensors,
    h5 and msgpack and one shared storage in a `.bin`: transformers 4.57 ties
    them again on load and finds every name it expects, and transformers 5,
    which no longer ties encoder and decoder, finds every weight it needs, so
    both load the model completely. `tied_names` lists the tied names to write
    instead (a conversion passes those its source file held).
    """
    if fmt not in FORMATS:
        raise CheckpointError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    os.makedirs(directory, exist_ok=True)
    target = as_dtype(dtype) if dtype is not None else None
    if target is not None and not is_floating(target):
        raise ConfigError(f"dtype {dtype!r} is not a floating-point type; expected float32, float16 or bfloat16")
    size = parse_size(shard_size) if shard_size is not None else None
    return write_checkpoint(directory, fmt, _native_tensors(state, spec, fmt, target, tied_names), size)


@dataclasses.dataclass
class ConvertReport:
    source: LoadReport
    format: str
    directory: str
    files: list[str]
    removed: list[str] = dataclasses.field(default_factory=list)  # weight files of another checkpoint
    recovered: list[str] = dataclasses.field(default_factory=list)  # what recover_directory did

    def summary(self) -> str:
        lines = [self.source.summary(), f"wrote {', '.join(self.files)} ({self.format}) to {self.directory}"]
        if self.removed:
            lines.append(f"removed from {self.directory} the weights of the checkpoint that was there: "
                         + ", ".join(self.removed))
        return "\n".join(lines + self.recovered)


def _copy_tokenizers(src_dir: str, dst_dir: str) -> None:
    """The tokenizer files travel with the model: the folder's own and its decoder's (`decoder_tokenizer/`)."""
    from ..tokenization import DECODER_TOKENIZER_DIR, copy_tokenizer_files

    copy_tokenizer_files(src_dir, dst_dir)
    decoder = os.path.join(src_dir, DECODER_TOKENIZER_DIR)
    if os.path.isdir(decoder):
        copy_tokenizer_files(decoder, os.path.join(dst_dir, DECODER_TOKENIZER_DIR))


def convert_checkpoint(
    src_dir: str | os.PathLike,
    dst_dir: str | os.PathLike,
    to: str,
    *,
    shard_size: int | str | None = None,
    dtype: str | np.dtype | None = None,
    progress: bool = True,
    src_fmt: str | None = None,
) -> ConvertReport:
    """Convert an encoder-decoder checkpoint folder to format `to`, tensor by tensor.

    Reads config.json and generation_config.json, checks every tensor against
    the config before writing anything, then streams the tensors one at a time
    into `dst_dir` (written to a temporary sibling and swapped in). The output
    holds the tensor names the source file holds (a tied checkpoint keeps the
    copy of each shared tensor that its writer stored).

    `dst_dir` ends up holding one model: files that are not weights (a tokenizer)
    are kept, and weight files of any format that were there are removed (and
    listed in `report.removed`), since they belong to another checkpoint. In
    place (`dst_dir` is `src_dir`) the source's other formats are kept.
    """
    from tqdm import tqdm

    if to not in FORMATS:
        raise CheckpointError(f"unknown target format {to!r}; expected one of {FORMATS}")
    src_dir, dst_dir = os.fspath(src_dir), os.fspath(dst_dir)
    recovered = recover_directory(src_dir)
    if os.path.realpath(dst_dir) != os.path.realpath(src_dir):
        recovered += recover_directory(dst_dir)
    config = EncoderDecoderConfig.from_pretrained(src_dir)
    if os.path.isfile(os.path.join(src_dir, GENERATION_CONFIG_NAME)):
        generation = GenerationConfig.from_pretrained(src_dir)
    else:
        generation = GenerationConfig.from_model_config(config)
    target = as_dtype(dtype) if dtype is not None else None
    if target is not None and not is_floating(target):
        raise ConfigError(f"dtype {dtype!r} is not a floating-point type; expected float32, float16 or bfloat16")
    size = parse_size(shard_size) if shard_size is not None else None
    in_place = os.path.realpath(dst_dir) == os.path.realpath(src_dir)

    def stale(filename: str) -> bool:
        return is_weight_file(filename, to) if in_place else is_weight_file(filename)

    with open_checkpoint(src_dir, src_fmt) as reader:
        check_config_fits(reader, config)
        spec = names.model_spec(config)
        match = _match(reader, spec)
        _raise_problems(reader, match, spec)
        _check_tied_copies(reader, match)
        total = sum(int(np.prod(spec.by_name[n].shape)) * reader.info(s).dtype.itemsize for n, s in match.sources.items())
        bar = tqdm(
            total=total, unit="B", unit_scale=True, disable=not progress, desc=f"{reader.format} -> {to}", leave=False
        )
        state = {}
        for name, source in match.sources.items():
            info = reader.info(source)

            def load(name=name) -> np.ndarray:
                array = _read_canonical(reader, spec, match, name)
                bar.update(array.nbytes)
                return array

            state[name] = LazyTensor(spec.by_name[name].shape, info.dtype, load)
        tensors = _native_tensors(
            state, spec, to, target, tied_names=match.tied_held, skip=set(match.sources) - match.direct
        )
        removed = []
        if os.path.isdir(dst_dir):
            removed = sorted(f for f in os.listdir(dst_dir) if stale(f) and not is_weight_file(f, to))
        try:
            with atomic_directory(dst_dir, keep=lambda f: not stale(f)) as tmp:
                files = write_checkpoint(tmp, to, tensors, size)
                config.save_pretrained(tmp)
                generation.save_pretrained(tmp)
                if not in_place:
                    _copy_tokenizers(src_dir, tmp)
        finally:
            bar.close()
        report = ConvertReport(_report(reader, match), to, dst_dir, files + [CONFIG_NAME, GENERATION_CONFIG_NAME])
        report.removed = removed
        report.recovered = recovered
        return report
