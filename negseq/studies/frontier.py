"""The frontier of a comparison: a model recommends more of what users like (HR_p, NDCG_p up) and less of what
they dislike (HR_n, NDCG_n down), and a change often trades one for the other.

:func:`dominance` reads a :func:`negseq.studies.paired.compare` (or :func:`negseq.studies.paired.pooled`) table for each pair of
metrics; :func:`draw` writes the picture ``python -m negseq.compare`` puts beside each log's COMPARE.md: per pair,
B's and A's points, A's paired interval, and the curve of ranking weights a model's runs tried after the fit
(:func:`curve_points`). matplotlib is imported inside :func:`draw` only, so importing this module stays light.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from negseq import layout
from negseq.errors import ConfigError
from negseq.studies.paired import PairedMetric, paired_metrics

GAINS = {name: layout.METRIC_LABELS[name] for name in layout.DELTA_METRICS}  # a pair per gain: its _p and _n metric
SENTENCES = {
    "a_dominates": "A dominates B",
    "b_dominates": "B dominates A",
    "neither": "neither dominates",
    "undecided": "cannot be decided (an undefined interval)",
}


def metric_pairs(k: int) -> dict[str, tuple[PairedMetric, PairedMetric]]:
    """``{"HR@k": (HR_p@k, HR_n@k), "NDCG@k": (NDCG_p@k, NDCG_n@k)}``: the liked-target metric, then the disliked-target one."""
    by_key = {(metric.gain, metric.sign): metric for metric in paired_metrics(k)}
    return {f"{label}@{k}": (by_key[gain, "pos"], by_key[gain, "neg"]) for gain, label in GAINS.items()}


def dominance(table: pl.DataFrame, k: int) -> dict[str, str]:
    """Per pair of metrics (``HR@k``, ``NDCG@k``): ``a_dominates``, ``b_dominates``, ``neither`` or ``undecided``.

    A dominates B when its interval makes it better on one metric of the pair (verdict ``a_better``) and not
    worse on the other (not ``b_better``); B dominates A the other way round. A better on one and worse on the
    other is a trade, ``neither``; so is no difference on both. A verdict ``undefined`` (nothing measured, e.g.
    no disliked-target user) leaves the pair ``undecided``: its other metric alone would not say "not worse".
    """
    verdicts = dict(zip(table["metric"], table["verdict"]))
    result = {}
    for name, pair in metric_pairs(k).items():
        both = {verdicts[metric.name] for metric in pair}
        if "undefined" in both:
            result[name] = "undecided"
        elif "a_better" in both and "b_better" not in both:
            result[name] = "a_dominates"
        elif "b_better" in both and "a_better" not in both:
            result[name] = "b_dominates"
        else:
            result[name] = "neither"
    return result


def curve_points(metrics: list[dict], k: int) -> list[dict]:
    """One point per ranking-weight candidate of a model's runs: the mean over seeds of its test metrics.

    ``metrics`` holds each seed's metrics.json; each has a ``ranking_curve`` (a list of ``{"weights": {...},
    "test/hr_p@k": ..., ...}``, the candidates in the same order in every seed) or none does (no points). Each
    point has the four ``test/{hr,ndcg}_{p,n}@k`` means, a ``label`` naming the weights that vary along the
    curve (``λ=2`` when one does, as the ranking weights are all lambdas in the docs) and a ``line``: the values of
    every varying weight but the last (``""`` when one varies), so that a grid of two weights draws as one line per
    value of the first, along the second.
    """
    curves = [run.get("ranking_curve") for run in metrics]
    if not any(curves):
        return []
    weights = [[candidate["weights"] for candidate in curve] if curve is not None else None for curve in curves]
    if any(w != weights[0] for w in weights):
        raise ConfigError("the runs of one config tried different ranking weights (or some tried none): delete the older runs to rerun them")
    varying = [name for name in weights[0][0] if len({candidate[name] for candidate in weights[0]}) > 1]
    keys = [metric.name for metric in paired_metrics(k) if metric.sign != "delta"]
    points = []
    for index, candidate in enumerate(weights[0]):
        label = f"λ={candidate[varying[0]]:g}" if len(varying) == 1 else ", ".join(f"{name}={candidate[name]:g}" for name in varying)
        line = ", ".join(f"{name}={candidate[name]:g}" for name in varying[:-1])
        # dtype float: a null metric (no user in its group) becomes NaN, and so does its mean
        means = {key: float(np.mean(np.array([curve[index][key] for curve in curves], dtype=float))) for key in keys}
        points.append({"label": label, "line": line, **means})
    return points


def draw(path: Path, table: pl.DataFrame, a: str, b: str, k: int, curves: dict[str, list[dict]]) -> Path:
    """Write the frontier picture of one log's comparison ``table`` (:func:`negseq.studies.paired.compare`) to ``path`` (PNG).

    Two panels, (HR_n@k, HR_p@k) and (NDCG_n@k, NDCG_p@k), better up and to the left: B's mean, A's mean, and A's
    95 % paired interval against B on both axes, drawn through A's point from B's mean + ``ci_low`` to B's mean +
    ``ci_high`` of A - B, so the picture says what the table says. ``curves`` maps ``a`` and ``b`` to their
    :func:`curve_points` (empty: no curve). A bare Figure renders with Agg: no pyplot, so no global backend or GUI
    is touched.
    """
    from matplotlib.figure import Figure

    rows = {row["metric"]: row for row in table.iter_rows(named=True)}
    colors = {b: "tab:blue", a: "tab:orange"}
    figure = Figure(figsize=(12, 6), layout="constrained")
    figure.suptitle(f"{a} (A) vs {b} (B): means over every (seed, user)")
    for ax, (positive, negative) in zip(figure.subplots(1, 2), metric_pairs(k).values()):
        x, y = rows[negative.name], rows[positive.name]
        for name, marker, model in ((b, "s", "B"), (a, "o", "A")):
            ax.scatter(x[model.lower()], y[model.lower()], marker=marker, s=60, color=colors[name], zorder=3, label=f"{name} ({model})")
        ax.hlines(y["a"], x["b"] + x["ci_low"], x["b"] + x["ci_high"], color=colors[a], label="A's 95 % paired interval against B")
        ax.vlines(x["a"], y["b"] + y["ci_low"], y["b"] + y["ci_high"], color=colors[a])
        for name, points in curves.items():
            lines = {point["line"]: [p for p in points if p["line"] == point["line"]] for point in points}
            for index, line in enumerate(lines.values()):
                ax.plot([p[negative.name] for p in line], [p[positive.name] for p in line], marker=".", linestyle="--", color=colors[name],
                        alpha=0.7, label=f"{name}: ranking weights tried (mean over seeds)" if index == 0 else None)
            if len(lines) == 1:  # a grid of several weights: its labels would cover the picture
                for point in points:
                    ax.annotate(point["label"], (point[negative.name], point[positive.name]), textcoords="offset points", xytext=(4, 4), fontsize="small")
        ax.annotate("better", xy=(0.03, 0.97), xytext=(0.16, 0.84), xycoords="axes fraction", ha="center", va="center",
                    arrowprops={"arrowstyle": "->"})
        ax.set_title(f"{positive.label} against {negative.label}")
        ax.set_xlabel(f"{negative.label}: disliked held-out item in the top {k} (lower is better)")
        ax.set_ylabel(f"{positive.label}: liked held-out item in the top {k} (higher is better)")
        ax.grid(alpha=0.3)
        ax.margins(0.1)  # room for the candidates' labels
    figure.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=4, fontsize="small")  # the same in both panels
    figure.savefig(path, dpi=110)
    return path
