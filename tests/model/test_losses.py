import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from geosolver_model.net.functional import equal_earth, fourier_features, haversine_km
from geosolver_model.net.location_encoder import LocationEncoder
from geosolver_model.train.losses import contrastive_loss, soft_targets


def _unit(*rows: list[float]) -> torch.Tensor:
    return F.normalize(torch.tensor(rows, dtype=torch.float32), dim=1)


def test_infonce_by_hand() -> None:
    img = _unit([1, 0], [0, 1])
    gps = _unit([1, 0], [1, 1])
    scale = torch.tensor(0.0)  # exp(0) = 1: logits are the cosines
    loss = contrastive_loss(img, gps, None, scale, torch.zeros(2, 2), None, "infonce", 100.0)
    c = 1 / math.sqrt(2)
    # image->gps rows: [1, c] target 0; [0, c] target 1. gps->image rows: [1, 0] target 0; [c, c] target 1
    i2g = (-math.log(math.e / (math.e + math.exp(c))) - math.log(math.exp(c) / (1 + math.exp(c)))) / 2
    g2i = (-math.log(math.e / (math.e + 1)) - math.log(0.5)) / 2
    assert float(loss) == pytest.approx((i2g + g2i) / 2, rel=1e-5)


def test_queue_adds_negatives() -> None:
    img, gps = _unit([1, 0], [0, 1]), _unit([1, 0], [0, 1])
    queue = _unit([1, 0.1])  # a past GPS almost identical to image 0's: a hard negative
    latlon = torch.tensor([[10.0, 10.0], [-30.0, 100.0]])
    without = contrastive_loss(img, gps, None, torch.tensor(2.0), latlon, None, "infonce", 100.0)
    with_q = contrastive_loss(img, gps, queue, torch.tensor(2.0), latlon, torch.tensor([[50.0, 50.0]]),
                              "infonce", 100.0)
    assert float(with_q) > float(without)


def test_soft_targets_follow_distance() -> None:
    true = torch.tensor([[0.0, 0.0]])
    cands = torch.tensor([[0.0, 0.0], [0.0, 1.0], [0.0, 10.0]])
    t = soft_targets(true, cands, tau_km=100.0)[0]
    d = haversine_km(true, cands)[0]
    assert float(t.sum()) == pytest.approx(1.0)
    assert float(t[0] / t[1]) == pytest.approx(math.exp(float(d[1]) / 100.0), rel=1e-4)
    assert t[0] > t[1] > t[2]


def test_soft_haversine_by_hand_and_tau_limit() -> None:
    img, gps = _unit([1, 0], [0, 1]), _unit([1, 0], [0, 1])
    latlon = torch.tensor([[0.0, 0.0], [0.0, 1.0]])  # 111 km apart
    loss = contrastive_loss(img, gps, None, torch.tensor(0.0), latlon, None, "soft_haversine", 111.19)
    w = 1 / (1 + math.exp(-1))  # target on the own location; exp(-d/τ) = e^-1 on the other
    logp_self, logp_other = 1 - math.log(math.e + 1), -math.log(math.e + 1)
    i2g = -(w * logp_self + (1 - w) * logp_other)
    g2i = -logp_self
    assert float(loss) == pytest.approx((i2g + g2i) / 2, rel=1e-3)
    # a tiny τ makes the soft targets one-hot: the objectives agree
    soft = contrastive_loss(img, gps, None, torch.tensor(1.0), latlon, None, "soft_haversine", 1e-3)
    hard = contrastive_loss(img, gps, None, torch.tensor(1.0), latlon, None, "infonce", 1e-3)
    assert float(soft) == pytest.approx(float(hard), rel=1e-5)


def test_unknown_objective() -> None:
    with pytest.raises(ValueError, match="unknown objective"):
        contrastive_loss(_unit([1, 0]), _unit([1, 0]), None, torch.tensor(0.0), torch.zeros(1, 2), None, "x", 1.0)


def test_haversine_matches_the_data_library() -> None:
    from geosolver_data.geo import haversine_km as np_haversine

    a, b = torch.tensor([[48.85, 2.35]]), torch.tensor([[51.5, -0.13], [-33.9, 151.2]])
    got = haversine_km(a, b)[0].numpy()
    want = np_haversine(48.85, 2.35, b[:, 0].numpy(), b[:, 1].numpy())
    assert np.allclose(got, want, rtol=1e-5)


def test_equal_earth_and_fourier_features() -> None:
    xy = equal_earth(torch.tensor([[0.0, 0.0], [0.0, 180.0], [0.0, -180.0], [90.0, 0.0]]))
    assert torch.allclose(xy[0], torch.zeros(2))
    assert float(xy[1, 0]) == pytest.approx(-float(xy[2, 0])) and float(xy[1, 0]) > 0
    assert float(xy[3, 1]) > 0 and abs(float(xy[3, 0])) < 1e-6
    feats = fourier_features(xy, torch.randn(7, 2))
    assert feats.shape == (4, 14) and torch.all(feats.abs() <= 1)


def test_location_encoder_shapes_and_determinism() -> None:
    latlon = torch.tensor([[48.85, 2.35], [-33.9, 151.2], [0.0, 0.0]])
    a, b = LocationEncoder(32, 16, 24, 2, seed=3), LocationEncoder(32, 16, 24, 2, seed=3)
    assert a(latlon).shape == (3, 32)
    assert torch.equal(a(latlon), b(latlon))
    assert not torch.equal(a(latlon), LocationEncoder(32, 16, 24, 2, seed=4)(latlon))
    assert "branches.0.b" in a.state_dict()  # the random projection is a buffer: checkpoints carry it
