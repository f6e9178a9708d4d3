"""GPS -> embedding: multi-scale random Fourier features of an equal-area projection, an MLP per
scale, summed (the GeoCLIP location encoder, Vivanco Cepeda et al. 2023). With GeoCLIP's sizes (256
features, three hidden layers of 1024, a 512-d head) its published weights load into it (geoclip.py).

The encoder always computes in fp32, whatever autocast is active: at σ=256 a Fourier feature's phase
`2π·v·b` reaches the thousands, and bf16's 8-bit mantissa rounds it by more than π, so under bf16
autocast points 10-20 km apart got identical embeddings, and training (bf16 on a GPU) and evaluation
(fp32) computed different functions. The encoder is a small share of a step's FLOPs."""

from __future__ import annotations

import contextlib
import itertools

import torch
from torch import nn

from geosolver_model.net.functional import equal_earth, fourier_features

SIGMAS = (2.0**0, 2.0**4, 2.0**8)


class ScaleBranch(nn.Module):
    """One frequency scale: a fixed Gaussian projection (a buffer, so checkpoints carry it), an MLP
    of `layers` hidden layers, and a linear head into the shared space."""

    def __init__(self, sigma: float, features: int, hidden: int, layers: int, out_dim: int,
                 generator: torch.Generator) -> None:
        super().__init__()
        self.register_buffer("b", torch.randn(features, 2, generator=generator) * sigma)
        widths = [2 * features] + [hidden] * layers
        self.mlp = nn.Sequential(*(m for a, b in itertools.pairwise(widths) for m in (nn.Linear(a, b), nn.ReLU())))
        self.head = nn.Linear(hidden, out_dim)

    def forward(self, xy: torch.Tensor) -> torch.Tensor:
        """(N, 2) projected coordinates -> (N, out_dim)."""
        return self.head(self.mlp(fourier_features(xy, self.b)))


class LocationEncoder(nn.Module):
    """(N, 2) degrees (lat, lon) -> (N, out_dim) embeddings (not normalised)."""

    def __init__(self, out_dim: int, features: int, hidden: int, layers: int, sigmas: tuple[float, ...] = SIGMAS,
                 seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[]):  # seeded weights, without touching the caller's RNG
            torch.manual_seed(seed)
            self.branches = nn.ModuleList(ScaleBranch(s, features, hidden, layers, out_dim, generator)
                                          for s in sigmas)

    def forward(self, latlon: torch.Tensor) -> torch.Tensor:
        off = torch.autocast(latlon.device.type, enabled=False) if torch.amp.is_autocast_available(
            latlon.device.type) else contextlib.nullcontext()
        with off:  # fp32 even inside a bf16 autocast region
            xy = equal_earth(latlon.float())
            return torch.stack([branch(xy) for branch in self.branches]).sum(dim=0)
