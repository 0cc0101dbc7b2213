"""Time the full-softmax next-item loss, forward + backward: torch's ``cross_entropy`` against negseq's fused one.

    python benchmarks/bench_softmax.py [--positions 5800] [--items 3650] [--dim 64] [--precision bf16]

The sizes default to one PNFRec step's CE_pos on ml-latest-small (128 users). Prints one JSON
line last: the median milliseconds of each over ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from negseq.models.losses import label_log_probs


def cross_entropy_log_probs(hidden: torch.Tensor, labels: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    return -F.cross_entropy((hidden @ items[1:].T).float(), labels - 1, reduction="none")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--positions", type=int, default=5800)
    parser.add_argument("--items", type=int, default=3650)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--precision", choices=["32", "bf16"], default="32")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    items = torch.randn(args.items + 1, args.dim, generator=generator).requires_grad_()
    hidden = torch.randn(args.positions, args.dim, generator=generator).requires_grad_()
    labels = torch.randint(1, args.items + 1, (args.positions,), generator=generator)
    result = {"positions": args.positions, "items": args.items, "dim": args.dim, "precision": args.precision}
    for name, log_probs in (("cross_entropy_ms", cross_entropy_log_probs), ("fused_ms", label_log_probs)):
        timings = []
        for _ in range(args.repeats + 1):  # the first run warms up
            started = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16"):
                loss = -log_probs(hidden, labels, items).mean()
            loss.backward()
            timings.append(time.perf_counter() - started)
        result[name] = round(statistics.median(timings[1:]) * 1000, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
