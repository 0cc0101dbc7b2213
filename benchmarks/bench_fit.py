"""Time training epochs and one evaluation pass of a negseq config; prints one JSON line last.

    python benchmarks/bench_fit.py --config experiments/data/ml-latest-small.yaml --config experiments/models/pnfrec.yaml --epochs 5 [--precision bf16-mixed] [--model.dim 128 ...]

Trains for exactly N epochs (no validation, no early stopping, no logger, no checkpoints), then
times one validation pass and one test pass.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning as L

from negseq.training.cli import NegSeqCLI


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", action="append", required=True, help="negseq.fit config; repeat to compose (data, then model)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--precision", default="32-true")
    args, overrides = parser.parse_known_args()
    with tempfile.TemporaryDirectory() as run_dir:
        cli = NegSeqCLI(  # accepts python -m negseq.fit configs; the lambda selection is not part of the benchmark
            run=False,
            args=[
                *(arg for config in args.config for arg in ("--config", config)), "--run_dir", run_dir, "--trainer.max_epochs", str(args.epochs),
                "--trainer.precision", args.precision, "--trainer.logger", "false",
                "--trainer.limit_val_batches", "0", "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
                "--early_stopping.patience", "1000000", "--early_stopping.check_finite", "false", *overrides,
            ],
        )
        trainer, model, data = cli.trainer, cli.model, cli.datamodule
        # forced callbacks that need validation metrics have nothing to do in a training-only benchmark
        trainer.callbacks = [c for c in trainer.callbacks if not isinstance(c, (L.pytorch.callbacks.EarlyStopping, L.pytorch.callbacks.ModelCheckpoint))]
        trainer.fit(model, datamodule=data)
        # the run's own history.jsonl times each epoch (no validation runs here, so it is training alone)
        epoch_seconds = [json.loads(line)["epoch_seconds"] for line in (Path(run_dir) / "history.jsonl").read_text().splitlines()]
        evaluator = L.Trainer(
            accelerator=trainer.strategy.root_device.type, devices=1, precision=args.precision,
            logger=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=run_dir,
        )
        started = time.perf_counter()
        evaluator.validate(model, datamodule=data, verbose=False)
        evaluator.test(model, datamodule=data, verbose=False)
        eval_seconds = time.perf_counter() - started
    per_epoch = statistics.median(epoch_seconds[1:] or epoch_seconds)
    result = {
        "config": args.config,
        "overrides": overrides,
        "epochs": args.epochs,
        "train_s_per_epoch": round(per_epoch, 4),
        "epoch_seconds": [round(s, 3) for s in epoch_seconds],
        "eval_s": round(eval_seconds, 4),
        "users_per_s": round(len(data.train_sequences) / per_epoch, 1),
        "num_items": data.num_items,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "device": str(trainer.strategy.root_device),
        "precision": args.precision,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
