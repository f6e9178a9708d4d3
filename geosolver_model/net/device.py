"""Where the model runs and in what precision: one rule for training, validation, evaluation,
embedding, indexing, `predict` and `play`.

`model.device: auto` is the first CUDA GPU when one is present (under torchrun, the process's own
GPU), else the CPU. `model.precision: auto` is bf16 autocast on a GPU and fp32 on a CPU; `bf16` asks
for autocast on the CPU too (slow, but it is how the tests exercise a GPU run's numerics). The
location encoder computes in fp32 under any autocast (location_encoder.py).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Literal

import torch

Precision = Literal["auto", "bf16", "fp32"]


def resolve(setting: str = "auto") -> torch.device:
    """`auto`, `cpu`, `cuda`, `cuda:N` (or any torch device string) -> the device to use."""
    if setting != "auto":
        dev = torch.device(setting)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"model.device is {setting!r} but torch sees no CUDA GPU "
                               f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); "
                               "set model.device: cpu or auto")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def uses_bf16(dev: torch.device, precision: str) -> bool:
    return precision == "bf16" or (precision == "auto" and dev.type == "cuda")


def autocast(dev: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast where the precision setting asks for it on this device; otherwise a no-op (also on a
    device autocast does not know, such as `meta`, the tests' stand-in for a GPU)."""
    if not torch.amp.is_autocast_available(dev.type):
        return contextlib.nullcontext()
    return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=uses_bf16(dev, precision))


def of(module: torch.nn.Module) -> torch.device:
    """The device a module's weights are on (what its inputs must be moved to)."""
    return next(module.parameters()).device


@contextlib.contextmanager
def inference(module: torch.nn.Module, precision: str) -> Iterator[torch.device]:
    """No gradients, and autocast as the precision asks on the module's device; yields that device."""
    dev = of(module)
    with torch.no_grad(), autocast(dev, precision):
        yield dev
