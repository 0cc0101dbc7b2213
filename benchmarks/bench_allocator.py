"""Training epochs with glibc's default malloc policy against negseq's ``keep_freed_memory``, alternated in one process.

    python benchmarks/bench_allocator.py --config experiments/data/ml-latest-small.yaml --config experiments/models/pnfrec.yaml [--rounds 5]

Separate processes cannot resolve a ~10 % difference on a VM whose speed drifts by 30 %, so one
process runs plain training epochs (forward, backward, Adam; no Lightning loop) under each policy
in turn, switching with ``mallopt``, and prints one JSON line: median seconds and minor page
faults an epoch under each.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import resource
import statistics
import tempfile
import time

import torch

from negseq.training.allocator import M_MMAP_MAX, M_TRIM_THRESHOLD, keep_freed_memory
from negseq.training.cli import NegSeqCLI

GLIBC_DEFAULTS = {M_MMAP_MAX: 65536, M_TRIM_THRESHOLD: 128 * 1024}


def use_glibc_defaults() -> None:
    libc = ctypes.CDLL(None)
    for param, value in GLIBC_DEFAULTS.items():
        libc.mallopt(param, value)
    libc.malloc_trim(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", action="append", required=True, help="negseq.fit config; repeat to compose (data, then model)")
    parser.add_argument("--rounds", type=int, default=5)
    args, overrides = parser.parse_known_args()
    with tempfile.TemporaryDirectory() as run_dir:
        cli = NegSeqCLI(run=False, args=[*(arg for config in args.config for arg in ("--config", config)), "--run_dir", run_dir, "--trainer.logger", "false", *overrides])
    model, data = cli.model, cli.datamodule
    data.setup("fit")
    model.setup("fit")
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=model.hparams.lr)
    batches = list(data.train_dataloader())

    def epoch() -> tuple[float, int]:
        faults, started = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
        for batch in batches:
            optimizer.zero_grad()
            model.training_step(batch, 0).backward()
            optimizer.step()
        return time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults

    policies = {"glibc_default": use_glibc_defaults, "keep_freed_memory": keep_freed_memory}  # set before every measured epoch
    measured = {name: [] for name in policies}
    for round_ in range(args.rounds):
        for name in sorted(policies, reverse=round_ % 2 == 1):  # alternate which policy goes first
            policies[name]()
            epoch()  # settle the heap under this policy
            measured[name].append(epoch())
    result = {"config": args.config, "overrides": overrides, "rounds": args.rounds}
    for name, runs in measured.items():
        result[f"{name}_s_per_epoch"] = round(statistics.median(s for s, _ in runs), 4)
        result[f"{name}_minor_faults_per_epoch"] = int(statistics.median(f for _, f in runs))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
