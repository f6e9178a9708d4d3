"""A coverage map of a dataset: every image on a world of GeoNames places, coloured by split."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from geosolver_data.gazetteer import load_gazetteer

if TYPE_CHECKING:
    import matplotlib.pyplot as plt


def _pyplot() -> ModuleType:
    """matplotlib, imported when a map is drawn: every process that loads the code location (an
    ingest run too) would otherwise pay its ~0.25 s import."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never a window
    import matplotlib.pyplot as plt

    return plt

_COLOURS = {"train": "#1f77b4", "validation": "#ff7f0e", "test": "#d62728"}


def world_axes() -> tuple[plt.Figure, plt.Axes]:
    """A world map; populated places in grey stand in for coastlines (offline)."""
    gaz = load_gazetteer()
    fig, ax = _pyplot().subplots(figsize=(12, 6), dpi=100)
    ax.scatter(gaz.lon[::2], gaz.lat[::2], s=0.3, c="#d0d0d0", linewidths=0, rasterized=True)
    ax.set_xlim(-180, 180)
    ax.set_ylim(-90, 90)
    ax.set_aspect("equal")
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    return fig, ax


def save(fig: plt.Figure, ax: plt.Axes, title: str, out: Path) -> Path:
    ax.set_title(title)
    ax.legend(loc="lower left", markerscale=3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    _pyplot().close(fig)
    return out


def coverage_map(lat: np.ndarray, lon: np.ndarray, split: np.ndarray, title: str, out: Path) -> Path:
    """Save a PNG map of the points, coloured by split."""
    fig, ax = world_axes()
    for name, colour in _COLOURS.items():
        mask = split == name
        ax.scatter(lon[mask], lat[mask], s=4, c=colour, label=f"{name} ({int(mask.sum())})", linewidths=0)
    return save(fig, ax, title, out)
