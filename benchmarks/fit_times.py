"""What fits cost: epochs run, best epoch and minutes per log and config, from a comparison's finished runs.

    python benchmarks/fit_times.py OUT [--configs pnfrec pnfrec_floor30 ...]

``OUT`` is a ``negseq.studies.compare --out`` folder (``OUT/<log>/runs/<config>/seed<seed>/`` with several ``--data``, or
``OUT/runs/<config>/seed<seed>/`` with one): each run's ``history.jsonl`` counts the epochs run, its ``metrics.json``
gives ``best_epoch`` and ``fit_seconds``. Prints a markdown table (means over seeds) and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from statistics import mean


def run_costs(run_dir: Path) -> dict[str, float]:
    """One finished run's epochs run, best epoch and fit minutes."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    epochs = sum(1 for line in (run_dir / "history.jsonl").read_text().splitlines() if line.strip())
    return {"epochs": epochs, "best_epoch": metrics["best_epoch"], "minutes": metrics["fit_seconds"] / 60}


def costs(out: Path, configs: list[str] | None = None) -> list[dict]:
    """A row per (log, config): the means over its seeds' runs, and how many seeds."""
    rows = []
    for runs in sorted(out.glob("*/runs")) or [out / "runs"]:
        log = runs.parent.name if runs.parent != out else out.name
        for config in sorted(path.name for path in runs.iterdir() if path.is_dir()):
            if configs and config not in configs:
                continue
            finished = [run_costs(seed) for seed in sorted((runs / config).glob("seed*")) if (seed / "metrics.json").is_file()]
            if finished:
                rows.append({"log": log, "config": config, "seeds": len(finished), **{key: mean(run[key] for run in finished) for key in finished[0]}})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="a negseq.studies.compare --out folder")
    parser.add_argument("--configs", nargs="*", help="only these configs (run folder names)")
    args = parser.parse_args()
    rows = costs(args.out, args.configs)
    print("| log | config | seeds | epochs run | best epoch | minutes |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['log']} | {row['config']} | {row['seeds']} | {row['epochs']:.1f} | {row['best_epoch']:.1f} | {row['minutes']:.2f} |")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
