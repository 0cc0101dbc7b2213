"""The study's frontier: every model of a several-log comparison on one HR_p@k / HR_n@k plane per log.

    PYTHONPATH=. python experiments/frontier_figure.py OUT --reference sasrec_p --models sasrec_p_prior pnfrec pnfrec_prior \
        --names sasrec_p=SASRec_p ... --png frontier.png

``OUT`` is a ``negseq.studies.compare --out`` folder of several logs (``OUT/<log>/runs/<model>/seed<N>/``), its runs finished.
Per log, each model's point is its mean over every (seed, user), with its 95 % paired interval against the reference
(``python -m negseq.compare``'s statistic, :func:`negseq.studies.paired.compare`) drawn through it on both axes; a model whose
runs tried ranking weights after the fit also gets the curve of those weights (means over seeds,
:func:`negseq.studies.frontier.curve_points`). Better is up and to the left. Prints, last, one JSON line with every point.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from negseq.studies.compare import load_per_user
from negseq.studies.frontier import curve_points
from negseq.studies.paired import compare, pair


def log_points(runs: Path, reference: str, models: list[str]) -> tuple[dict[str, dict], dict[str, list[dict]], int]:
    """Per model, its HR_p/HR_n means with the paired interval against ``reference`` (the reference: no interval),
    and its curve of ranking weights."""
    by_model = {model: {int(seed.name.removeprefix("seed")): seed for seed in (runs / model).glob("seed*") if (seed / "metrics.json").is_file()} for model in (reference, *models)}
    base, k = load_per_user(by_model[reference])
    points, curves = {}, {}
    for model, seeds in by_model.items():
        frame, _ = load_per_user(seeds)
        rows = {row["label"]: row for row in compare(pair(frame, base), k).iter_rows(named=True)}
        points[model] = {name: rows[f"{name}@{k}"] for name in ("HR_p", "HR_n")}
        curves[model] = curve_points([json.loads((run / "metrics.json").read_text()) for run in seeds.values()], k)
    return points, curves, k


def draw(path: Path, logs: dict[str, tuple[dict, dict, int]], names: dict[str, str]) -> None:
    """One panel per log: each model's point, its interval against the reference, its curve."""
    from matplotlib.figure import Figure

    columns = min(len(logs), 2)
    rows = -(-len(logs) // columns)
    figure = Figure(figsize=(5.6 * columns, 4.8 * rows), layout="constrained")
    colors = {}
    for ax, (log, (points, curves, k)) in zip(figure.subplots(rows, columns, squeeze=False).flat, logs.items()):
        for model, point in points.items():
            color = colors.setdefault(model, f"C{len(colors)}")
            label = names.get(model, model)
            x, y = point["HR_n"], point["HR_p"]
            ax.scatter(x["a"], y["a"], color=color, s=50, zorder=3, label=label)
            if model != next(iter(points)):  # the reference has no interval against itself
                ax.hlines(y["a"], x["b"] + x["ci_low"], x["b"] + x["ci_high"], color=color, alpha=0.8)
                ax.vlines(x["a"], y["b"] + y["ci_low"], y["b"] + y["ci_high"], color=color, alpha=0.8)
            for line in {point["line"] for point in curves[model]}:  # a grid of two weights: a line per value of the first
                along = [p for p in curves[model] if p["line"] == line]
                ax.plot([p[f"test/hr_n@{k}"] for p in along], [p[f"test/hr_p@{k}"] for p in along], ".:", color=color, alpha=0.5)
        ax.set_title(log)
        ax.set_xlabel(f"HR_n@{k} (disliked held-out item in the top {k}; lower is better)")
        ax.set_ylabel(f"HR_p@{k} (liked held-out item; higher is better)")
        ax.grid(alpha=0.3)
    figure.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=len(colors), fontsize="small")
    figure.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="a several-log negseq.studies.compare --out folder")
    parser.add_argument("--reference", required=True, help="the run folder name every interval is against")
    parser.add_argument("--models", nargs="+", required=True)
    parser.add_argument("--names", nargs="*", default=[], help="run name=label pairs")
    parser.add_argument("--logs", nargs="*", help="these logs, in this order (default: every folder of OUT with runs)")
    parser.add_argument("--png", type=Path, required=True, help="the picture to write")
    args = parser.parse_args()
    logs = args.logs or sorted(path.parent.name for path in args.out.glob("*/runs"))
    results = {log: log_points(args.out / log / "runs", args.reference, args.models) for log in logs}
    draw(args.png, results, dict(name.split("=", 1) for name in args.names))
    print(json.dumps({log: points for log, (points, _, _) in results.items()}))


if __name__ == "__main__":
    main()
