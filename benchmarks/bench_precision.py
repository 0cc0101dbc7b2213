"""How often the bf16 encoder (``Recommender(precision="bf16")``) recommends what the fp32 one does; prints one JSON line.

    python benchmarks/bench_precision.py --run runs/<run> [--log ratings.csv] [--k 10]

Every user of the log (default: the embedded ml-latest-small), their whole history: the share of
users whose top-k list is identical (same items, same order), whose top-k set is identical, the
share of recommended items both give, and the largest score difference at the same rank.
"""

from __future__ import annotations

import argparse
import json

from negseq import Recommender
from negseq.data.datamodule import embedded_ratings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="Run directory or .ckpt file.")
    parser.add_argument("--log", default=None, help="Log to recommend for (default: the embedded ml-latest-small).")
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    log = args.log or embedded_ratings()
    fp32, bf16 = (Recommender.load(args.run, precision=precision).recommend_log(log, k=args.k).sort("user_id", "rank") for precision in ("fp32", "bf16"))
    lists = [frame.group_by("user_id", maintain_order=True).agg("item_id")["item_id"].to_list() for frame in (fp32, bf16)]
    print(json.dumps({
        "users": len(lists[0]),
        "identical_lists": round(sum(a == b for a, b in zip(*lists)) / len(lists[0]), 4),
        "identical_sets": round(sum(set(a) == set(b) for a, b in zip(*lists)) / len(lists[0]), 4),
        "shared_items": round(fp32.join(bf16, on=["user_id", "item_id"]).height / fp32.height, 4),
        "max_score_difference": round(float((fp32["score"] - bf16["score"]).abs().max()), 5),
    }))


if __name__ == "__main__":
    main()
