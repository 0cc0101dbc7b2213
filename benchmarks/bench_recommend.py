"""Recommend-all throughput of :class:`negseq.Recommender` on a synthetic log; prints one JSON line last.

    python benchmarks/bench_recommend.py --users 100000 --items 20000 --history 50 [--batch_size 4096] [--k 10] [--precision bf16]

Each synthetic user has ``--history`` events (random items, ``--negative_share`` of them
disliked); the model is PNFRec-sized (d=64, 2 blocks, max_len 50, a negative encoder) with random
weights (speed does not depend on them). Timed: :meth:`Recommender.iter_log` over the log frame
(validate and sign, encode ids, per batch: sequences, encoder, block scores of the whole
catalogue with seen items removed, exact top-k, original ids), the frames consumed and dropped
as `negseq recommend` writes them. ``users_per_cpu_s`` (users per second of the process's CPU time) with
``--threads 1`` compares variants on a machine shared with other jobs, where wall seconds are not comparable. ``peak_rss_mb`` is the process's peak (log included), so run
one size per process.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np
import polars as pl
import torch

from negseq.data.catalog import Catalog
from negseq.models.recommender import SequentialRecommender
from negseq.serving.api import Recommender


def synthetic_log(users: int, items: int, history: int, negative_share: float, seed: int = 0) -> pl.DataFrame:
    """``user_id, item_id, rating, timestamp``: ``history`` random items per user (a repeat is rare: 50 of 20k gives
    0.06 a user on average), rating 1 (disliked) or 5."""
    rng = np.random.default_rng(seed)
    item = rng.integers(0, items, (users, history))
    return pl.DataFrame({
        "user_id": np.repeat(np.arange(users, dtype=np.int64), history),
        "item_id": item.reshape(-1).astype(np.int64) + 1,
        "rating": np.where(rng.random(users * history) < negative_share, 1.0, 5.0),
        "timestamp": np.tile(np.arange(history, dtype=np.int64), users),
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--history", type=int, default=50)
    parser.add_argument("--negative_share", type=float, default=0.3)
    parser.add_argument("--batch_size", type=int, default=4096)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--max_len", type=int, default=50)
    parser.add_argument("--negative_scoring", type=float, default=0.0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, 2 here).")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="The encoder's (Recommender's precision).")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = SequentialRecommender(args.items, args.max_len, args.dim, negative_scoring=args.negative_scoring)
    ids = pl.Series("item_id", np.arange(1, args.items + 1, dtype=np.int64))
    popularity = torch.cat([torch.zeros(1), torch.rand(args.items)])
    columns = {"user": "user_id", "item": "item_id", "feedback": "rating", "time": "timestamp"}
    reading = {"format": "auto", "user_col": None, "item_col": None, "feedback_col": None, "time_col": None, "threshold": 4.0}
    recommender = Recommender(model, Catalog(ids, popularity, None, reading, columns, args.max_len), precision=args.precision)
    log = synthetic_log(args.users, args.items, args.history, args.negative_share)

    started, cpu_started = time.perf_counter(), time.process_time()
    rows = sum(frame.height for frame in recommender.iter_log(log, args.k, batch_size=args.batch_size))
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    assert rows == args.users * args.k
    print(json.dumps({
        "users": args.users, "items": args.items, "history": args.history, "k": args.k, "batch_size": args.batch_size, "precision": args.precision,
        "seconds": round(seconds, 2), "users_per_s": round(args.users / seconds),
        "cpu_seconds": round(cpu_seconds, 2), "users_per_cpu_s": round(args.users / cpu_seconds), "threads": torch.get_num_threads(),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }))


if __name__ == "__main__":
    main()
