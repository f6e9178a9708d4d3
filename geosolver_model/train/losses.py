"""Contrastive objectives between image and GPS embeddings.

Both score every image against the batch's GPS plus a queue of past GPS (extra negatives, as
GeoCLIP does). `infonce` wants the image's own GPS (one-hot); `soft_haversine` spreads the target
over candidates by distance, exp(-d/τ) normalised, so a guess 5 km off costs less than one 5,000 km
off (the haversine smoothing of PIGEON, applied to retrieval).

A candidate within `same_place_km` of an image's own location is that place again (the same photo's
GPS back in the queue a batch later, a second photo of one street corner), not a negative: infonce
masks it out of the softmax, and soft_haversine gives it the positive's weight. Without this, about
half the demo's positives had a copy of their own location in the queue after one epoch, and the
one-hot objective pushed each image away from its own place.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from geosolver_model.net.functional import haversine_km


def soft_targets(true_gps: torch.Tensor, candidates: torch.Tensor, tau_km: float,
                 same_place_km: float = 0.0) -> torch.Tensor:
    """(B, 2) x (C, 2) -> (B, C) rows summing to 1, ∝ exp(-haversine/τ) (distance 0 within same_place_km)."""
    km = haversine_km(true_gps, candidates)
    return torch.softmax(-km.masked_fill(km <= same_place_km, 0.0) / tau_km, dim=1)


def one_hot_targets(true_gps: torch.Tensor, candidates: torch.Tensor, tau_km: float,
                    same_place_km: float = 0.0) -> torch.Tensor:
    """(B, 2) x (C, 2) -> (B, C): all weight on the image's own GPS, the first B candidates."""
    return torch.eye(len(true_gps), len(candidates), device=true_gps.device, dtype=torch.float32)


# The objectives (config.Objective names them): each is its image->GPS targets, and whether other
# candidates at the image's own place are masked out of the softmax (they carry no target weight).
LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "infonce": one_hot_targets,
    "soft_haversine": soft_targets,
}
MASKS_SAME_PLACE = frozenset({"infonce"})


def same_place(gps: torch.Tensor, candidates: torch.Tensor, same_place_km: float) -> torch.Tensor:
    """(B, 2) x (C, 2) -> (B, C) bool: candidate j is image i's place but not its own entry (j != i)."""
    if same_place_km <= 0:
        return torch.zeros(len(gps), len(candidates), dtype=torch.bool, device=gps.device)
    near = haversine_km(gps, candidates) <= same_place_km
    return near & ~torch.eye(len(gps), len(candidates), dtype=torch.bool, device=gps.device)


def _cross_entropy(logits: torch.Tensor, targets: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """Mean over rows of -Σ targets·log_softmax(logits), masked entries out of the softmax."""
    logp = F.log_softmax(logits.masked_fill(masked, float("-inf")), dim=1)
    return -torch.where(targets > 0, targets * logp, torch.zeros_like(logp)).sum(dim=1).mean()


def contrastive_loss(image_emb: torch.Tensor, gps_emb: torch.Tensor, queue_emb: torch.Tensor | None,
                     logit_scale: torch.Tensor, gps: torch.Tensor, queue_gps: torch.Tensor | None,
                     objective: str, tau_km: float, same_place_km: float = 0.0) -> torch.Tensor:
    """Loss for normalised embeddings: image (B, D), batch GPS (B, D), queue GPS (Q, D) or None.

    Image->GPS over batch + queue (one-hot or soft targets), plus GPS->image over the batch for
    symmetry (other images of the same place masked out). The queue carries no gradient.
    """
    if objective not in LOSSES:
        raise ValueError(f"unknown objective {objective!r}; known: {sorted(LOSSES)}")
    cand_emb = gps_emb if queue_emb is None else torch.cat([gps_emb, queue_emb])
    cand_gps = gps if queue_gps is None else torch.cat([gps, queue_gps])
    scale = logit_scale.exp()
    targets = LOSSES[objective](gps, cand_gps, tau_km, same_place_km)
    i2g_mask = same_place(gps, cand_gps, same_place_km if objective in MASKS_SAME_PLACE else 0.0)
    i2g = _cross_entropy(scale * image_emb @ cand_emb.T, targets, i2g_mask)  # (B, B+Q) logits
    own = torch.eye(len(image_emb), device=image_emb.device, dtype=torch.float32)
    g2i = _cross_entropy(scale * gps_emb @ image_emb.T, own, same_place(gps, gps, same_place_km))
    return (i2g + g2i) / 2
