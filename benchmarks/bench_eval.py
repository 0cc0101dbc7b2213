"""Time one evaluation pass on synthetic tensors; prints one JSON line last.

    python benchmarks/bench_eval.py --users 5000 --items 20000 --history 200 [--batch 1000] [--precision bf16] [--profile]

A pass is what validation/test do per user: the encoder over the last 50 liked items, scores of
the whole catalogue, removal of H seen items, the target's rank, top-10, and every metric. The
model has random weights (speed does not depend on them). The process keeps large freed blocks
(``negseq.training.allocator``) as every process of the CLI does; ``--glibc_malloc`` leaves glibc's default.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time

import torch

from negseq.training.allocator import keep_freed_memory
from negseq.training.module import NegSeqModule


def synthetic_batches(users: int, items: int, history: int, max_len: int, batch: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    positives = torch.randint(1, items + 1, (users, max_len), generator=generator)
    seen = torch.randint(1, items + 1, (users, history), generator=generator)
    targets = torch.randint(1, items + 1, (users,), generator=generator)
    negatives = torch.randint(1, items + 1, (users, max_len), generator=generator)
    liked = torch.rand(users, generator=generator) < 0.6
    for start in range(0, users, batch):
        rows = slice(start, start + batch)
        yield {
            "positives": positives[rows], "negatives": negatives[rows], "history": positives[rows], "history_positive": torch.ones_like(positives[rows], dtype=torch.bool),
            "seen": seen[rows], "target": targets[rows], "target_positive": liked[rows],
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--items", type=int, default=20000)
    parser.add_argument("--history", type=int, default=200)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--max_len", type=int, default=50)
    parser.add_argument("--precision", choices=["32", "bf16"], default="32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--block", type=int, default=2048, help="score_block_items: catalogue items scored at a time (the model default)")
    parser.add_argument("--profile", action="store_true", help="print torch.profiler's table of one more pass (not timed)")
    parser.add_argument("--stage", choices=["val", "test"], default="val", help="test adds the responsiveness metrics' two ranking passes")
    parser.add_argument("--glibc_malloc", action="store_true", help="leave glibc's default malloc policy (the CLI changes it)")
    args = parser.parse_args()
    if not args.glibc_malloc:
        keep_freed_memory()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = NegSeqModule(num_items=args.items, num_train_items=args.items, max_len=args.max_len, score_block_items=args.block).to(device).eval()
    batches = [{k: v.to(device) for k, v in b.items()} for b in synthetic_batches(args.users, args.items, args.history, args.max_len, args.batch)]
    timings = []
    for repeat in range(args.repeats + 1 + args.profile):  # the first pass warms up; an extra one is profiled
        profiling = repeat > args.repeats
        started = time.perf_counter()
        with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16, enabled=args.precision == "bf16"), torch.profiler.profile(
            record_shapes=True
        ) if profiling else contextlib.nullcontext() as profiler:
            for batch in batches:
                model._shared_eval_step(batch, args.stage)
            values = {name: metric.compute() for name, metric in model.metrics[args.stage].items()}
        if device == "cuda":
            torch.cuda.synchronize()
        if not profiling:
            timings.append(time.perf_counter() - started)
        else:
            print(profiler.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=25))
        for metric in model.metrics[args.stage].values():
            metric.reset()
    eval_s = min(timings[1:])
    print(json.dumps({
        "users": args.users, "items": args.items, "history": args.history, "batch": args.batch, "block": args.block, "precision": args.precision,
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "eval_s": round(eval_s, 4),
        "users_per_s": round(args.users / eval_s, 1), "stage": args.stage, "hr_p@10": round(float(values["hr@10"]["pos"]), 4),
    }))


if __name__ == "__main__":
    main()
