"""GPS -> embedding: multi-scale random Fourier features of an equal-area projection, an MLP per
scale, summed (the GeoCLIP location encoder, Vivanco Cepeda et al. 2023)."""

from __future__ import annotations

import torch
from torch import nn

from geosolver_model.functional import equal_earth, fourier_features


class ScaleBranch(nn.Module):
    """One frequency scale: fixed Gaussian projection (a buffer, so checkpoints carry it) + MLP."""

    def __init__(self, sigma: float, features: int, hidden: int, out_dim: int, generator: torch.Generator) -> None:
        super().__init__()
        self.register_buffer("b", torch.randn(features, 2, generator=generator) * sigma)
        self.mlp = nn.Sequential(
            nn.Linear(2 * features, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, out_dim),
        )

    def forward(self, xy: torch.Tensor) -> torch.Tensor:
        return self.mlp(fourier_features(xy, self.b))


class LocationEncoder(nn.Module):
    """(N, 2) degrees (lat, lon) -> (N, out_dim) embeddings (not normalised)."""

    def __init__(self, out_dim: int, features: int = 256, hidden: int = 512,
                 sigmas: tuple[float, ...] = (2.0**0, 2.0**4, 2.0**8), seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[]):  # seeded weights, without touching the caller's RNG
            torch.manual_seed(seed)
            self.branches = nn.ModuleList(ScaleBranch(s, features, hidden, out_dim, generator) for s in sigmas)

    def forward(self, latlon: torch.Tensor) -> torch.Tensor:
        xy = equal_earth(latlon.float())
        return torch.stack([branch(xy) for branch in self.branches]).sum(dim=0)
