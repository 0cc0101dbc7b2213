"""Time data preparation on a synthetic log; prints one JSON line last.

    python benchmarks/bench_data.py --events 20000000 [--max_len 50] [--split leave_last_out] [--order time] [--stages]

Preparation is everything FeedbackDataModule does before training: read the parquet log,
validate it, sign it (rating >= 4), keep items with >= 5 users then users with >= 5 items,
split, and build the dense training, validation and test tensors. The log comes from
``negseq.data.synthetic`` (seed 0) and is cached under ``--cache`` (written by a separate process,
so that neither its time nor its memory counts); ``--order`` picks the row order of the file
(``time``, ``user`` as MovieLens dumps, ``random``: the worst case, one full sort). ``seconds`` is the wall time of the preparation,
``peak_rss_mb`` the peak resident memory of this process (Python, torch and polars included;
``baseline_rss_mb`` is the part before preparation started). ``--stages`` adds each stage's seconds.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import time
from pathlib import Path


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def synthetic_log(events: int, order: str, cache: Path) -> Path:
    path = cache / (f"synthetic-{events}.parquet" if order == "time" else f"synthetic-{events}-{order}.parquet")
    if not path.is_file():
        command = [sys.executable, "-m", "negseq.data.synthetic", "--events", str(events), "--order", order, "--out", str(path)]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--max_len", type=int, default=50)
    parser.add_argument("--split", default="leave_last_out", choices=["leave_last_out", "temporal"])
    parser.add_argument("--order", default="time", choices=["time", "user", "random"], help="row order of the log file")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/negseq-bench"))
    parser.add_argument("--stages", action="store_true", help="also report the seconds of each stage")
    args = parser.parse_args()
    path = synthetic_log(args.events, args.order, args.cache)

    import polars as pl

    from negseq.data import FeedbackDataModule, splits
    from negseq.data.io import read_log

    logging.basicConfig(level=logging.WARNING)
    baseline = rss_mb()
    stages: dict[str, float] = {}
    started = time.perf_counter()
    if args.stages:  # the same steps as FeedbackDataModule, one at a time
        from negseq.data.sequences import EvalSequences, TrainSequences

        mark = time.perf_counter()

        def stage(name: str) -> None:
            nonlocal mark
            now = time.perf_counter()
            stages[name] = round(now - mark, 3)
            mark = now

        frame = read_log(path)
        stage("read_validate")
        frame = splits.add_sign(frame, 4.0, path)
        stage("sign")
        frame = splits.filter_cores(frame, 5, 5, path)
        stage("core_filters")
        split = (splits.temporal if args.split == "temporal" else splits.leave_last_out)(frame, 42)
        del frame
        stage("split")
        train = TrainSequences.from_events(split.train, args.max_len)
        stage("train_tensors")
        validation = EvalSequences.from_events(split.validation, args.max_len)
        test = EvalSequences.from_events(split.test, args.max_len)
        stage("eval_tensors")
        users, items = len(train), split.num_items
        sizes = (len(validation), len(test))
    else:
        data = FeedbackDataModule(path=str(path), split=args.split, max_len=args.max_len)
        data.setup("fit")
        data.test_sequences
        users, items = len(data.train_sequences), data.num_items
        sizes = (len(data.validation_sequences), len(data.test_sequences))
    seconds = time.perf_counter() - started
    result = {
        "events": args.events, "seconds": round(seconds, 2), "peak_rss_mb": round(rss_mb()), "baseline_rss_mb": round(baseline),
        "train_users": users, "items": items, "validation_users": sizes[0], "test_users": sizes[1],
        "max_len": args.max_len, "split": args.split, "order": args.order, "polars_threads": pl.thread_pool_size(),
    }
    if stages:
        result["stages"] = stages
    print(json.dumps(result))


if __name__ == "__main__":
    main()
