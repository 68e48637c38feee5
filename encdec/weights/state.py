"""A canonical state against a model's spec, and Flax's nested params trees (numpy only).

A canonical state is `{canonical name: array}` holding stored parameters of a
`ModelSpec` (tied names left out). `check_state` is the one check every port makes
before it allocates or copies anything, so a state that does not fit is refused
with the same message in every framework.

Flax keeps parameters in a nested dict whose paths are the spec's "/"-joined
`flax_path`s. Building that tree, reading it back and adding the paths that
`tie_encoder_decoder` shares are plain dict work, done here; a port passes the
function that puts a leaf on its device.
"""

from __future__ import annotations

from typing import Callable, Collection, Mapping, Optional

import numpy as np

from ..errors import CheckpointError
from .names import ModelSpec, ParamSpec

Path = tuple[str, ...]


def check_state(spec: ModelSpec, state: Mapping, partial: bool = False) -> None:
    """Refuse a state that does not fit `spec`: a tied name, an unknown name, a wrong shape, or
    (unless `partial`) a stored name it lacks. CheckpointError naming the tensor."""
    for name, array in state.items():
        tied = spec.tied_by_name.get(name)
        if tied is not None:
            raise CheckpointError(
                f"{name} is tied to {tied.source} ({tied.reason}); expected the stored name {tied.source} only"
            )
        p = spec.by_name.get(name)
        if p is None:
            raise CheckpointError(
                f"{name}: not a stored parameter of this model; expected one of the {len(spec)} stored names of "
                "model_spec(config)"
            )
        shape = tuple(np.shape(array))
        if shape != p.shape:
            raise CheckpointError(f"{name}: the state's tensor has shape {shape}; the model's has {p.shape}")
    if not partial:
        missing = [p.name for p in spec if p.name not in state]
        if missing:
            raise CheckpointError(
                f"the state lacks {len(missing)} stored tensor(s), e.g. {missing[:5]}; expected every one "
                "(or partial=True)"
            )


def count_parameters(spec: ModelSpec, exclude_embeddings: bool = False,
                     trainable: Optional[Collection[str]] = None) -> int:
    """How many numbers the stored parameters of `spec` hold, each tied one once, as transformers counts:
    only the stored names in `trainable` when given, without the embedding tables (kind "embedding")
    with `exclude_embeddings`."""
    return sum(int(np.prod(p.shape)) for p in spec
               if (trainable is None or p.name in trainable) and not (exclude_embeddings and p.kind == "embedding"))


def put_nested(
    tree: dict,
    spec: ModelSpec,
    state: Mapping,
    place: Optional[Callable[[np.ndarray], object]] = None,
    partial: bool = False,
) -> dict:
    """A new params tree: `tree` with each tensor of `state` at its Flax path, in the Flax layout.

    Only the dicts are new (the leaves `state` does not replace are shared), so `tree`
    stays as it was. A value takes the dtype of the leaf it replaces (its own at a new
    path) and goes through `place` (e.g. `jax.device_put`). `state` is checked first
    (`check_state`), so nothing is built for one that does not fit.
    """
    check_state(spec, state, partial)
    tree = _copy_dicts(tree)
    for name, array in state.items():
        p = spec.by_name[name]
        *parents, leaf = p.flax_path.split("/")
        node = tree
        for key in parents:
            node = node.setdefault(key, {})
        dtype = node[leaf].dtype if leaf in node else None
        value = np.ascontiguousarray(p.to_flax(np.asarray(array)), dtype=dtype)
        node[leaf] = value if place is None else place(value)
    return tree


def nested_leaf(tree: Mapping, p: ParamSpec):
    """The leaf at `p.flax_path` (nothing copied); CheckpointError when it is absent or misshapen."""
    node = tree
    for key in p.flax_path.split("/"):
        if not isinstance(node, Mapping) or key not in node:
            raise CheckpointError(
                f"params have no entry {p.flax_path} (parameter {p.name}); expected every path of the spec"
            )
        node = node[key]
    if tuple(np.shape(node)) != p.flax_shape:
        raise CheckpointError(f"params entry {p.flax_path} has shape {tuple(np.shape(node))}; expected {p.flax_shape}")
    return node


def nested_state(spec: ModelSpec, tree: Mapping) -> dict[str, np.ndarray]:
    """A params tree -> the canonical state (writable numpy copies); every path of `spec` must be there."""
    return {p.name: p.from_flax(np.array(nested_leaf(tree, p))) for p in spec}


def tied_flax_paths(spec: ModelSpec) -> list[tuple[Path, Path]]:
    """(tied path, stored path) of each tensor `tie_encoder_decoder` shares between the encoder and the
    decoder's body. The LM head's tie to the word embeddings is left out: the modules make it."""
    return [
        (tuple(spec.flax_path(name).split("/")), tuple(spec.flax_path(source).split("/")))
        for name, source in spec.tied_pairs(shared_with_encoder=True)
    ]


def with_tied(tree: dict, tied: list[tuple[Path, Path]]) -> dict:
    """`tree` plus, at each tied path, the leaf at its stored path: the same object, so gradients of
    the two uses add up. The dicts on the tied paths are new; `tree` stays as it was."""
    if not tied:
        return tree
    tree = dict(tree)
    for target, source in tied:
        value = tree
        for key in source:
            value = value[key]
        node = tree
        for key in target[:-1]:
            node[key] = dict(node.get(key, {}))
            node = node[key]
        node[target[-1]] = value
    return tree


def _copy_dicts(tree):
    """The same tree with every dict new and every leaf shared."""
    if isinstance(tree, Mapping):
        return {key: _copy_dicts(value) for key, value in tree.items()}
    return tree
