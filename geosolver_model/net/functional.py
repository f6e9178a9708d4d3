"""Stateless tensor math: map projection, Fourier features, great-circle distance."""

from __future__ import annotations

import math

import torch

EARTH_RADIUS_KM = 6371.0088
# Equal Earth projection (Šavrič, Patterson & Jenny 2018), as GeoCLIP feeds it to its encoder.
_A1, _A2, _A3, _A4 = 1.340264, -0.081106, 0.000893, 0.003796
_SF = 66.50336


def equal_earth(latlon: torch.Tensor) -> torch.Tensor:
    """(N, 2) degrees (lat, lon) -> (N, 2) equal-area plane coordinates, roughly in [-1.5, 1.5]."""
    lat, lon = torch.deg2rad(latlon[:, 0]), torch.deg2rad(latlon[:, 1])
    theta = torch.asin(math.sqrt(3) / 2 * torch.sin(lat))
    denom = 3 * (9 * _A4 * theta**8 + 7 * _A3 * theta**6 + 3 * _A2 * theta**2 + _A1)
    x = 2 * math.sqrt(3) * lon * torch.cos(theta) / denom
    y = _A4 * theta**9 + _A3 * theta**7 + _A2 * theta**3 + _A1 * theta
    return torch.stack((x, y), dim=1) * _SF / 180


def fourier_features(v: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Random Fourier features (Tancik et al. 2020): (N, 2) x (M, 2) -> (N, 2M)."""
    proj = 2 * math.pi * v @ b.T
    return torch.cat((torch.cos(proj), torch.sin(proj)), dim=-1)


def haversine_km(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise great-circle distances: (N, 2) x (M, 2) degrees -> (N, M) km."""
    a, b = torch.deg2rad(a.double()), torch.deg2rad(b.double())
    dlat = b[None, :, 0] - a[:, None, 0]
    dlon = b[None, :, 1] - a[:, None, 1]
    h = torch.sin(dlat / 2) ** 2 + torch.cos(a[:, None, 0]) * torch.cos(b[None, :, 0]) * torch.sin(dlon / 2) ** 2
    return (2 * EARTH_RADIUS_KM * torch.asin(torch.sqrt(h.clamp(0, 1)))).float()
