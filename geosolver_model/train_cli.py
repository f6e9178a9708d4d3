"""`torchrun --nproc_per_node N -m geosolver_model.train_cli ...`: one training process per GPU."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch.distributed as dist

from geosolver_data.model_spec import ModelConfig
from geosolver_model.evaluation.validation import validator
from geosolver_model.train import distributed as D
from geosolver_model.train.loop import save_final, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", type=Path, required=True, help="a published dataset version folder")
    parser.add_argument("--objective", required=True)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--spec-json", required=True, help="the spec's model section as JSON")
    args = parser.parse_args()
    spec = ModelConfig.model_validate_json(args.spec_json)
    D.init_from_env()
    result = train(spec, args.dataset, args.objective, args.run_dir,
                   log=lambda m: print(m, flush=True) if D.rank() == 0 else None,
                   validate=validator(spec, args.dataset) if spec.val_every else None)
    if D.rank() == 0:
        save_final(result, args.run_dir / "final")
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
