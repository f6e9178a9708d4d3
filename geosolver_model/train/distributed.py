"""Process-group helpers: torchrun sets RANK/WORLD_SIZE/LOCAL_RANK; one process otherwise."""

from __future__ import annotations

import os
import warnings

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def init_from_env() -> bool:
    """Join the process group torchrun describes; False when not launched by torchrun."""
    if dist.is_initialized() or "RANK" not in os.environ:
        return dist.is_initialized()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend)
    return True


def gather_numpy(x: np.ndarray) -> np.ndarray:
    """Concatenate an array of any length from every rank, in rank order (all_gather_object: no padding,
    and it works on gloo and NCCL alike)."""
    if world_size() == 1:
        return x
    parts: list[np.ndarray | None] = [None] * world_size()
    dist.all_gather_object(parts, x)
    return np.concatenate([p for p in parts if p is not None])


def gather(x: torch.Tensor) -> torch.Tensor:
    """Concatenate a tensor from every rank, keeping gradients to the local part.

    With every rank computing the same global loss, all_gather's backward sums the gradient from
    all ranks, and DDP's averaging then gives exactly the single-process gradient.
    """
    if world_size() == 1:
        return x
    with warnings.catch_warnings():  # deprecated in favour of a private API; still the autograd-aware one
        warnings.simplefilter("ignore", FutureWarning)
        return torch.cat(dist_fn.all_gather(x))
