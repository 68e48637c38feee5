"""Training an `EncoderDecoderModel` on several devices with PyTorch's own engines.

Data parallel: plain `torch.nn.parallel.DistributedDataParallel(model)` works as it
is: every trainable parameter gets a gradient from the loss, so each gradient bucket
is all-reduced on every step and no `find_unused_parameters=True` is needed.

Sharded (FSDP2): `fully_shard_model` calls `torch.distributed.fsdp.fully_shard` once
per transformer layer and then once on the root, the wrapping transformers and
torchtitan use. Each layer group all-gathers its parameters just before it runs and
frees them after; what no layer holds (embeddings, LM head, pooler, the projection
between the halves) is the root's group. With `tie_encoder_decoder=True`, encoder
layer i and decoder layer i hold the same parameter objects (self-attention and
feed-forward), and `fully_shard` refuses a parameter that another group already
manages; such layers are therefore put in ONE group (`fully_shard([enc_i, dec_i])`),
found by the parameters they share, so that the tie survives the sharding.

Checkpoints: `full_state_dict` gathers the sharded (or replicated) parameters into
one canonical numpy state on rank 0 (`torch.distributed.checkpoint.state_dict.
get_model_state_dict` with `full_state_dict=True, cpu_offload=True`), and
`save_pretrained` writes it with the same writer as `EncoderDecoderModel.
save_pretrained`, so a folder saved from a sharded model holds the same files, byte
for byte, as one saved by a single process holding the same weights.

Every rank must call `full_state_dict` and `save_pretrained` (the gather is a
collective); only rank 0 writes.

Generation: `generate` calls the model's parts directly (the encoder, the decoder
layers' cross-attention projections for the cache), outside the forward in which a
group gathers its parameters; `with unsharded(model): model.generate(...)` keeps
every group's full parameters for the block. Every rank runs the same generation.
"""

from __future__ import annotations

import contextlib
import os
from typing import Optional

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..errors import CheckpointError, ConfigError

__all__ = ["layer_groups", "fully_shard_model", "unsharded", "full_state_dict", "save_pretrained"]


def _unwrap(model: nn.Module) -> nn.Module:
    """The `EncoderDecoderModel` inside a `DistributedDataParallel` (FSDP2 wraps in place: no unwrapping)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def layer_groups(model: nn.Module) -> list[list[nn.Module]]:
    """The FSDP groups of `model`'s transformer layers, in model order: each layer alone, except
    layers that hold the same parameter objects (`tie_encoder_decoder`), which form one group."""
    layers = [layer for module in model.modules() if isinstance(module, nn.ModuleList) for layer in module]
    # Union of layers that share a parameter: each layer's group is found through its parameters' owners.
    owner: dict[int, int] = {}  # id(parameter) -> index of the group holding it
    groups: list[list[nn.Module]] = []
    for layer in layers:
        hits = sorted({owner[id(p)] for p in layer.parameters() if id(p) in owner})
        if not hits:
            index = len(groups)
            groups.append([layer])
        else:
            index = hits[0]
            groups[index].append(layer)
            for other in hits[1:]:  # a layer that joins two groups merges them
                groups[index].extend(groups[other])
                groups[other] = []
                for p_id, g in owner.items():
                    if g == other:
                        owner[p_id] = index
        for param in layer.parameters():
            owner[id(param)] = index
    return [group for group in groups if group]


def fully_shard_model(model: nn.Module, **fsdp_kwargs) -> nn.Module:
    """Shard `model` with FSDP2: `fully_shard` on each group of `layer_groups(model)` (a tied
    encoder/decoder layer pair is one group), then on the root. `fsdp_kwargs` (`mesh`,
    `reshard_after_forward`, `mp_policy`, `offload_policy`) go to every call. The model is
    changed in place (its parameters become DTensors) and returned. Needs an initialised
    process group (`torch.distributed.init_process_group`) unless a `mesh` is given.
    """
    from torch.distributed.fsdp import fully_shard

    if isinstance(model, nn.parallel.DistributedDataParallel):
        raise ConfigError("the model is wrapped in DistributedDataParallel; expected the bare EncoderDecoderModel "
                          "(FSDP2 and DDP are two ways to train, not layers of one)")
    for group in layer_groups(model):
        fully_shard(group if len(group) > 1 else group[0], **fsdp_kwargs)
    fully_shard(model, **fsdp_kwargs)
    return model


def _reshards_after_forward(group) -> bool:
    # FSDP2 has a setter but no getter: a group that reshards after forward keeps the mesh to
    # reshard to (torch 2.6+); when that is not there, assume fully_shard's default (True).
    param_group = getattr(group._get_fsdp_state(), "_fsdp_param_group", None)
    if param_group is None or not hasattr(param_group, "post_forward_mesh_info"):
        return True
    return param_group.post_forward_mesh_info is not None


@contextlib.contextmanager
def unsharded(model: nn.Module):
    """Within the block, every FSDP2 group of `model` holds its full parameters and keeps them across
    forwards (for `generate`, which calls the model's parts outside their groups' forward); on
    leaving, they are sharded again as before. A model without FSDP2 groups (plain, DDP) is left
    as it is. Every rank must enter the block (gathering is a collective)."""
    from torch.distributed.fsdp import FSDPModule

    groups = [m for m in _unwrap(model).modules() if isinstance(m, FSDPModule)]
    settings = [_reshards_after_forward(g) for g in groups]
    for group in groups:
        group.set_reshard_after_forward(False, recurse=False)
        group.unshard()
    try:
        yield model
    finally:
        for group, setting in zip(groups, settings):
            group.reshard()
            group.set_reshard_after_forward(setting, recurse=False)


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:
        import ml_dtypes

        return tensor.view(torch.int16).numpy().copy().view(ml_dtypes.bfloat16)
    return tensor.numpy().copy()


def full_state_dict(model: nn.Module) -> dict:
    """The full canonical state of a sharded (FSDP2), replicated (DDP) or plain model: numpy arrays
    by canonical name (tied names left out), as `EncoderDecoderModel.canonical_state` gives it.

    A collective: every rank calls it. Rank 0 gets the state; the other ranks get `{}`. The full
    tensors are gathered to the CPU one by one, so no device holds more than one of them at once.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    inner = _unwrap(model)
    spec = getattr(inner, "spec", None)
    if spec is None:
        raise ConfigError(f"{type(inner).__name__} has no parameter spec; expected an encdec EncoderDecoderModel")
    if not (dist.is_available() and dist.is_initialized()):
        return inner.canonical_state()
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    gathered = get_model_state_dict(inner, options=options)
    if _rank() != 0:
        return {}
    # A tied parameter may be listed under any of its names; the spec says which names are one tensor.
    aliases = {p.name: [p.name] for p in spec}
    for tied in spec.tied:
        aliases.setdefault(tied.source, [tied.source]).append(tied.name)
    state = {}
    for name, names in aliases.items():
        found = next((gathered[n] for n in names if n in gathered), None)
        if found is None:
            raise CheckpointError(f"{name}: not in the gathered state dict; expected one of the names {names}")
        state[name] = _to_numpy(found)
    return state


def save_pretrained(model: nn.Module, save_directory: str | os.PathLike, safe_serialization: bool = True,
                    max_shard_size: Optional[int | str] = None) -> None:
    """`EncoderDecoderModel.save_pretrained` for a sharded or replicated model: the full state is
    gathered on rank 0 (`full_state_dict`), which writes the folder (atomically, as a single
    process does); every rank calls it and returns once the folder is in place."""
    inner = _unwrap(model)
    state = full_state_dict(model)
    error: Optional[BaseException] = None
    if _rank() == 0:
        try:
            # The model's own writer: the same files, config.json's dtype included.
            inner._write_folder(save_directory, state, safe_serialization, max_shard_size)
        except BaseException as exc:  # re-raised below, after the other ranks are released
            error = exc
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
    if error is not None:
        raise error
