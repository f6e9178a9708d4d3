"""Training you can see: each objective's loss (and validation median error, where `model.val_every`
recorded it) against the step, from the curves a published model's manifest holds."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from geosolver_data.store.manifests import TrainingRun


def curve_plot(runs: dict[str, TrainingRun], out: Path, title: str) -> Path:
    """Loss per step for every objective (left), validation median km where measured (right)."""
    fig, (loss_ax, val_ax) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    for name, run in runs.items():
        steps = [c["step"] for c in run.curve]
        loss_ax.plot(steps, [c["loss"] for c in run.curve], label=name)
        val = [(c["step"], c["val_median_km"]) for c in run.curve if c.get("val_median_km") is not None]
        if val:
            val_ax.plot(*zip(*val, strict=True), marker="o", label=name)
    loss_ax.set_xlabel("step")
    loss_ax.set_ylabel("training loss")
    loss_ax.legend()
    val_ax.set_xlabel("step")
    val_ax.set_ylabel("validation median error (km)")
    if val_ax.lines:
        val_ax.legend()
    else:
        val_ax.text(0.5, 0.5, "no validation steps (model.val_every: 0)", ha="center", va="center",
                    transform=val_ax.transAxes)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out
