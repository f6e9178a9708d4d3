"""Contrastive objectives between image and GPS embeddings.

Both score every image against the batch's GPS plus a queue of past GPS (extra negatives, as
GeoCLIP does). `infonce` wants the image's own GPS (one-hot); `soft_haversine` spreads the target
over candidates by distance, exp(-d/τ) normalised, so a guess 5 km off costs less than one 5,000 km
off (the haversine smoothing of PIGEON, applied to retrieval).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from geosolver_model.functional import haversine_km


def soft_targets(true_gps: torch.Tensor, candidates: torch.Tensor, tau_km: float) -> torch.Tensor:
    """(B, 2) x (C, 2) -> (B, C) rows summing to 1, ∝ exp(-haversine/τ)."""
    return torch.softmax(-haversine_km(true_gps, candidates) / tau_km, dim=1)


def one_hot_targets(true_gps: torch.Tensor, candidates: torch.Tensor, tau_km: float) -> torch.Tensor:
    """(B, 2) x (C, 2) -> (B, C): all weight on the image's own GPS, the first B candidates."""
    return torch.eye(len(true_gps), len(candidates), device=true_gps.device, dtype=torch.float32)


# The objectives (config.Objective names them): each is its image->GPS targets.
LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]] = {
    "infonce": one_hot_targets,
    "soft_haversine": soft_targets,
}


def contrastive_loss(image_emb: torch.Tensor, gps_emb: torch.Tensor, queue_emb: torch.Tensor | None,
                     logit_scale: torch.Tensor, gps: torch.Tensor, queue_gps: torch.Tensor | None,
                     objective: str, tau_km: float) -> torch.Tensor:
    """Loss for normalised embeddings: image (B, D), batch GPS (B, D), queue GPS (Q, D) or None.

    Image->GPS over batch + queue (one-hot or soft targets), plus GPS->image over the batch for
    symmetry. The queue carries no gradient.
    """
    cand_emb = gps_emb if queue_emb is None else torch.cat([gps_emb, queue_emb])
    cand_gps = gps if queue_gps is None else torch.cat([gps, queue_gps])
    scale = logit_scale.exp()
    logits = scale * image_emb @ cand_emb.T  # (B, B+Q)
    if objective not in LOSSES:
        raise ValueError(f"unknown objective {objective!r}; known: {sorted(LOSSES)}")
    targets = LOSSES[objective](gps, cand_gps, tau_km)
    i2g = torch.sum(-targets * F.log_softmax(logits, dim=1), dim=1).mean()
    g2i = F.cross_entropy(scale * gps_emb @ image_emb.T, torch.arange(len(image_emb), device=image_emb.device))
    return (i2g + g2i) / 2
