"""A table of paired comparisons: every model against one or more references, on runs that already exist.

    PYTHONPATH=. python experiments/paired_table.py RUNS --models m30 m30_sasrec ... --references m30 m30_sasrec_p \
        --names m30=PNFRec m30_sasrec=SASRec ... --seeds 42..51 > TABLE.md

RUNS holds ``<model>/seed<N>/`` run directories with ``per_user.parquet`` (``negseq.studies.compare`` and
``negseq.studies.runner`` write them). Each cell is ``python -m negseq.compare``'s statistic for that
pair: the mean difference of the per-user gains, model minus reference, over every (seed, user), with
its 95 % crossed bootstrap interval (seeds and users resampled independently, each drawn user kept in every
drawn seed); bold when the interval excludes 0.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from negseq.studies.compare import load_per_user
from negseq.studies.paired import compare, pair

METRICS = ("HR_p", "NDCG_p", "HR_n", "Delta_HR")


def seed_range(text: str) -> list[int]:
    first, last = (int(part) for part in text.split(".."))
    return list(range(first, last + 1))


def cell(row: dict) -> str:
    text = f"{row['diff']:+.4f} [{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]"
    return f"**{text}**" if row["verdict"] in ("a_better", "b_better") else text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path)
    parser.add_argument("--models", nargs="+", required=True)
    parser.add_argument("--references", nargs="+", required=True)
    parser.add_argument("--names", nargs="*", default=[], help="run name=label pairs")
    parser.add_argument("--seeds", type=seed_range, default=seed_range("42..51"))
    args = parser.parse_args()
    names = dict(item.split("=", 1) for item in args.names)
    label = lambda model: names.get(model, model)  # noqa: E731
    loaded = {model: load_per_user({seed: args.runs / model / f"seed{seed}" for seed in args.seeds}) for model in {*args.models, *args.references}}
    header = ["model", "HR_p@k"] + [f"{metric} - {label(reference)}" for reference in args.references for metric in METRICS]
    print("| " + " | ".join(header) + " |\n" + "|---" * len(header) + "|")
    for model in args.models:
        (frame, k) = loaded[model]
        cells, mean = [], None
        for reference in args.references:
            if reference == model:
                cells += ["(reference)"] * len(METRICS)
                continue
            table = compare(pair(frame, loaded[reference][0]), k)
            rows = {row["label"].split("@")[0]: row for row in table.iter_rows(named=True)}
            cells += [cell(rows[metric]) for metric in METRICS]
            mean = rows["HR_p"]["a"]  # the model's own mean: the same users whatever the reference
        print(f"| {label(model)} | {'' if mean is None else f'{mean:.4f}'} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
