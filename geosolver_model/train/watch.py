"""What a person watches while a model trains: a log line with steps/s, samples/s and an ETA, and
TensorBoard event files (loss, learning rate, throughput; the validation figures at each validation
step) that `tensorboard --logdir` reads while the run goes on and after it is published.

Only the first process writes (under DDP every rank trains the same steps). The events live in the
run's folder, so a resumed run appends to the same curves (TensorBoard joins its event files by step),
and `save_final` keeps them with the model (`runs/`, where the Hub looks for training metrics too).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from geosolver_data.ingest.progress import duration

EVENTS = "tensorboard"  # under the run's folder while training
PUBLISHED_EVENTS = "runs"  # under the saved model's folder


class TrainingWatch:
    def __init__(self, run_dir: Path, objective: str, steps: int, start_step: int, log: Callable[[str], None],
                 writes: bool, every: int = 10) -> None:
        self.objective, self.steps, self.start_step, self.log, self.every = objective, steps, start_step, log, every
        self.started = time.perf_counter()
        self.writer = None
        if writes:
            from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: only the writing process

            # Resuming: the steps after the checkpoint were logged by the run that crashed and are trained
            # again; purge_step hides those earlier events, so each step shows once.
            self.writer = SummaryWriter(log_dir=str(run_dir / EVENTS),
                                        purge_step=start_step + 1 if start_step else None)

    def step(self, step: int, loss: float, lr: float, samples_per_s: float) -> None:
        if self.writer is not None:
            for name, value in (("loss", loss), ("learning_rate", lr), ("samples_per_s", samples_per_s)):
                self.writer.add_scalar(f"train/{name}", value, step)
        if step % self.every and step != self.steps:
            return
        elapsed = time.perf_counter() - self.started
        done = step - self.start_step
        steps_per_s = done / elapsed if elapsed > 0 else 0.0
        eta = (self.steps - step) / steps_per_s if steps_per_s else 0.0
        self.log(f"{self.objective}: step {step}/{self.steps} loss {loss:.4f} {steps_per_s:.2f} steps/s "
                 f"{samples_per_s:.1f} samples/s, ETA {duration(eta)}")

    def validated(self, step: int, figures: dict[str, float | None]) -> None:
        if self.writer is not None:
            for name, value in figures.items():
                if value is not None:
                    self.writer.add_scalar(f"validation/{name}", value, step)
        median = figures.get("median_km")
        if median is not None:
            self.log(f"{self.objective}: step {step} validation median {median:,.1f} km, "
                     f"acc@25km {figures.get('acc_25km', 0):.3f}")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
