"""Time data preparation on a synthetic log, cold and then from the prepared-data cache; prints one JSON line last.

    python benchmarks/bench_data.py --events 20000000 [--format zvuk] [--max_len 50] [--split leave_last_out] [--order time] [--scratch DIR]

Preparation is everything FeedbackDataModule does before training: scan the log, validate it,
sign it (rating >= 4; Zvuk: 30 s, plays summed per session), keep items with >= 5 users then
users with >= 5 items, split, build the dense training, validation and test tensors and write
them to the cache. The log comes from ``negseq.studies.synthetic`` (seed 0; ``--format zvuk`` the
chunked Zvuk-shaped writer) and is kept under ``--scratch``; each measured run is a fresh
process (neither the generation nor the other run counts): the first with an empty cache
(``seconds``, ``peak_rss_mb``: the process' peak resident memory, Python, torch and polars
included; ``baseline_rss_mb`` is the part before preparation started), the second mapping the
entry the first wrote (``cached_seconds``, ``cached_peak_rss_mb``). ``--order`` picks the row
order of a generic log (``time``, ``user`` as MovieLens dumps, ``random``: one full sort).
``users``, ``items``: after the filters; ``events_kept``: training events plus the held-out
targets that are evaluated.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}  # this checkout's negseq


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def synthetic_log(events: int, fmt: str, order: str, scratch: Path) -> Path:
    if fmt == "zvuk":
        path = scratch / f"zvuk-{events}" / "zvuk-interactions.parquet"
        command = ["--format", "zvuk", "--out", str(path)]
    else:
        path = scratch / (f"synthetic-{events}.parquet" if order == "time" else f"synthetic-{events}-{order}.parquet")
        command = ["--order", order, "--out", str(path)]
    if not path.is_file():
        subprocess.run([sys.executable, "-m", "negseq.synthetic", "--events", str(events), *command], check=True, stdout=subprocess.DEVNULL, env=ENV)
    return path


def measure(path: Path, split: str, max_len: int, cache_dir: Path) -> dict:
    """One preparation in this process: the DataModule as a run uses it (its cache written or mapped)."""
    from negseq.data import FeedbackDataModule

    baseline = rss_mb()
    started = time.perf_counter()
    data = FeedbackDataModule(path=str(path), split=split, max_len=max_len, threshold=None, cache_dir=str(cache_dir))
    data.prepare_data()
    data.setup("fit")
    data.test_sequences
    seconds = time.perf_counter() - started
    evaluated = len(data.validation_sequences) + len(data.test_sequences)
    return {
        "seconds": round(seconds, 2), "peak_rss_mb": round(rss_mb()), "baseline_rss_mb": round(baseline),
        "users": data.user_ids.len(), "items": data.num_items, "train_users": len(data.train_sequences),
        "events_kept": int(data.item_counts.sum()) + evaluated, "validation_users": len(data.validation_sequences), "test_users": len(data.test_sequences),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--format", default="generic", choices=["generic", "zvuk"])
    parser.add_argument("--max_len", type=int, default=50)
    parser.add_argument("--split", default="leave_last_out", choices=["leave_last_out", "temporal"])
    parser.add_argument("--order", default="time", choices=["time", "user", "random"], help="row order of a generic log file")
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/negseq-bench"), help="where the logs and the cache go")
    parser.add_argument("--measure", type=Path, default=None, help=argparse.SUPPRESS)  # internal: one measured run of this log
    args = parser.parse_args()
    cache_dir = args.scratch / "prepared-cache"
    if args.measure:
        print(json.dumps(measure(args.measure, args.split, args.max_len, cache_dir)))
        return
    path = synthetic_log(args.events, args.format, args.order, args.scratch)
    shutil.rmtree(cache_dir, ignore_errors=True)
    command = [sys.executable, __file__, "--measure", str(path), "--split", args.split, "--max_len", str(args.max_len), "--scratch", str(args.scratch)]
    runs = [json.loads(subprocess.run(command, check=True, capture_output=True, text=True, env=ENV).stdout.strip().splitlines()[-1]) for _ in range(2)]
    cold, cached = runs
    import polars as pl

    result = {
        "events": args.events, "format": args.format, **cold, "cached_seconds": cached["seconds"], "cached_peak_rss_mb": cached["peak_rss_mb"],
        "max_len": args.max_len, "split": args.split, "order": args.order if args.format == "generic" else "chunks of users, time order in each",
        "polars_threads": pl.thread_pool_size(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
