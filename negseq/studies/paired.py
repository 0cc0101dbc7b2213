"""Paired comparison of two models on the same test users and seeds, with bootstrap intervals.

Pure functions on the ``per_user.parquet`` frames runs write (``user_id, item_id, positive, rank``)
with a ``seed`` column added: :func:`pair` lines up model A's and model B's rows for each
(seed, user), :func:`compare` gives each metric's means, their difference A - B and a bootstrap
95 % interval of it, and :func:`pooled` the relative difference over several logs.
``python -m negseq.compare`` is the command around them.

The interval is a crossed bootstrap: each resample draws the seeds with replacement and the users
once with replacement (liked-target and disliked-target users apart, so each group keeps its size),
and takes the mean over every drawn (seed, user) cell. Users alone would leave out how much a whole
run moves with its seed, which on small logs is larger than the differences being decided. Users
drawn anew inside each drawn seed (a nested bootstrap) would be wrong the other way: every seed
evaluates the same test users, so a user on whom A does better than B tends to stay so in every seed,
and redrawing users per seed averages that user effect away over the seeds (in the simulation of
tests/test_paired.py, 65 % of nested 95 % intervals held a true difference of 0, 95 % of crossed ones).
Drawing each user once keeps it. The crossed draw counts the (seed, user) noise more than once and so
errs on the wide side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import torch

from negseq import layout
from negseq.errors import NegSeqError
from negseq.evaluation import metrics

GAINS = layout.SIGNED_METRICS  # each user's gain of each metric, a column of the paired frame: hr, ndcg, mrr


@dataclass(frozen=True)
class PairedMetric:
    """A row of the comparison: ``sign`` is the target group (``pos``, ``neg``) or ``delta`` (pos mean - neg mean)."""

    label: str  # as in the tables, e.g. HR_p@10
    name: str  # as in metrics.json, e.g. test/hr_p@10
    gain: str
    sign: str
    higher_is_better: bool


def paired_metrics(k: int) -> tuple[PairedMetric, ...]:
    """The metrics compared, named with the runs' cut-off ``k``: HR and NDCG (:data:`negseq.layout.DELTA_METRICS`) of
    the liked-target users (higher is better), of the disliked-target users (lower is better), and their Delta."""
    groups = (("pos", "p", True), ("neg", "n", False))
    signed = [
        PairedMetric(f"{layout.METRIC_LABELS[name]}_{suffix}@{k}", f"test/{name}_{suffix}@{k}", name, sign, higher)
        for sign, suffix, higher in groups for name in layout.DELTA_METRICS
    ]
    deltas = [PairedMetric(f"Delta_{layout.METRIC_LABELS[name]}@{k}", f"test/delta_{name}@{k}", name, "delta", True) for name in layout.DELTA_METRICS]
    return (*signed, *deltas)


class PairingError(NegSeqError):
    """The two models' runs were not evaluated on the same test users, targets and seeds."""


def gains(per_user: pl.DataFrame) -> pl.DataFrame:
    """Add each user's gains from ``rank`` (null = not in the top k: 0), computed by the functions the metrics of the
    same names use (:mod:`negseq.evaluation.metrics`: ``hr`` = 1, ``ndcg`` = 1/log2(rank+1), ``mrr`` = 1/rank)."""
    k = int(per_user["rank"].max() or 0)  # every rank a run wrote is within its cutoff
    ranks = torch.from_numpy(per_user["rank"].cast(pl.Float64).fill_null(k + 1.0).to_numpy())
    return per_user.with_columns(**{name: pl.Series(name, gain(ranks, k).double().numpy()) for name, gain in metrics.GAINS.items()})


def pair(a: pl.DataFrame, b: pl.DataFrame) -> pl.DataFrame:
    """One row per (seed, user) with ``positive`` and each gain of A and of B (``hr_a``, ``hr_b``, ...).

    Both frames are per_user frames with a ``seed`` column. A (seed, user) in one and not the other,
    or a user whose held-out target differs between the two, is an error: the pairing needs the same split.
    """
    keys = ["seed", "user_id"]
    for name, frame in (("A", a), ("B", b)):
        duplicated = frame.select(keys).is_duplicated()
        if duplicated.any():
            raise PairingError(f"model {name}: {int(duplicated.sum())} rows repeat a (seed, user_id); expected one test target per user and seed")
    joined = gains(a).join(gains(b), on=keys, how="full", suffix="_b", coalesce=True)
    unpaired = joined.filter(pl.col("item_id").is_null() | pl.col("item_id_b").is_null())
    if unpaired.height:
        example = unpaired.row(0, named=True)
        raise PairingError(
            f"{unpaired.height} (seed, user) pairs are in one model's per_user.parquet only (e.g. seed {example['seed']}, user "
            f"{example['user_id']!r}); run both models on the same data and split (--data.* and split_seed alike)"
        )
    different = joined.filter((pl.col("item_id") != pl.col("item_id_b")) | (pl.col("positive") != pl.col("positive_b")))
    if different.height:
        raise PairingError(f"{different.height} users have a different held-out target in A and B; run both on the same data and split")
    renamed = {gain: f"{gain}_a" for gain in GAINS}
    return joined.rename(renamed).select(*keys, "positive", *[f"{gain}_{model}" for gain in GAINS for model in "ab"]).sort(keys)


def _by_seed(paired: pl.DataFrame, positive: bool, column: str) -> np.ndarray:
    """``(S, U)`` values of ``column`` for the users of one target sign, a row per seed (same users in every seed)."""
    group = paired.filter(pl.col("positive") == positive)
    if group.is_empty():
        return np.empty((1, 0))
    users = group.group_by("seed").agg(pl.col("user_id").sort())["user_id"]
    if users.n_unique() > 1:
        raise PairingError("the seeds' runs have different test users; every seed must use the same split (same --data.split_seed)")
    return group.sort("seed", "user_id")[column].to_numpy().reshape(users.len(), -1)


def _resampled_means(values: np.ndarray, seed_draws: np.ndarray, rng: np.random.Generator, chunk_cells: int = 20_000_000) -> np.ndarray:
    """``(R,)`` means of ``values`` (S, U) over resamples: seeds as ``seed_draws`` (R, S) crossed with one draw of users per resample.

    The users a resample draws are the same in each of its drawn seeds (see the module docstring). Resamples
    go in chunks of about ``chunk_cells`` drawn cells, so memory stays bounded.
    """
    n_resamples, n_seeds = seed_draws.shape
    n_users = values.shape[1]
    if n_users == 0:
        return np.full(n_resamples, np.nan)
    means = np.empty(n_resamples)
    step = max(1, chunk_cells // (n_seeds * n_users))
    for start in range(0, n_resamples, step):
        seeds = seed_draws[start : start + step]  # (r, S)
        users = rng.integers(0, n_users, size=(len(seeds), n_users))  # (r, U)
        means[start : start + step] = values[seeds[:, :, None], users[:, None, :]].mean(axis=(1, 2))
    return means


def compare(paired: pl.DataFrame, k: int, resamples: int = 10_000, seed: int = 0, confidence: float = 0.95) -> pl.DataFrame:
    """Per metric: A's and B's means over all (seed, user) rows of its group, ``diff`` = A - B, its bootstrap interval and a verdict.

    The interval is the crossed bootstrap of the module docstring: the seeds and, once per resample, the
    users of each target group, because a user's advantage of A over B persists across the seeds of the
    same test users. The verdict is ``a_better`` or ``b_better`` when the interval excludes 0 (on the side
    that is better for the metric: lower for HR_n and NDCG_n), ``undefined`` when it has no value (a group
    without users), else ``no_difference``. ``seed`` makes the resamples reproducible.
    """
    n_seeds = paired["seed"].n_unique()
    seed_draws = np.random.default_rng(seed).integers(0, n_seeds, size=(resamples, n_seeds))  # (R, S), shared by every metric and group

    def group(gain: str, positive: bool) -> tuple[float, float, np.ndarray]:
        """A's mean, B's mean and the (R,) resampled mean differences of one target-sign group."""
        a, b = (_by_seed(paired, positive, f"{gain}_{model}") for model in "ab")  # (S, U) each
        # a generator per group, the same for every gain: the users drawn for HR are those drawn for NDCG
        resampled = _resampled_means(a - b, seed_draws, np.random.default_rng([seed, int(positive)]))
        return (a.mean(), b.mean(), resampled) if a.size else (np.nan, np.nan, resampled)

    rows = []
    for metric in paired_metrics(k):
        if metric.sign == "delta":
            (a_pos, b_pos, d_pos), (a_neg, b_neg, d_neg) = group(metric.gain, True), group(metric.gain, False)
            a_mean, b_mean, resampled = a_pos - a_neg, b_pos - b_neg, d_pos - d_neg
        else:
            a_mean, b_mean, resampled = group(metric.gain, metric.sign == "pos")
        low, high = _interval(resampled, confidence)
        rows.append(
            {"metric": metric.name, "label": metric.label, "a": float(a_mean), "b": float(b_mean), "diff": float(a_mean - b_mean),
             "ci_low": low, "ci_high": high, "verdict": verdict(low, high, metric.higher_is_better)}
        )
    return pl.DataFrame(rows)


def _interval(resampled: np.ndarray, confidence: float) -> tuple[float, float]:
    """The central ``confidence`` percentile interval of the resampled values (NaN when any is undefined).

    ``+inf`` values (a relative difference over a resampled B mean of 0) are the largest; a bound among them is ``+inf``.
    """
    if np.isnan(resampled).any():
        return np.nan, np.nan
    with np.errstate(invalid="ignore"):  # interpolating at +inf gives NaN
        bounds = np.quantile(resampled, [(1 - confidence) / 2, (1 + confidence) / 2])
    low, high = np.where(np.isnan(bounds), np.inf, bounds)
    return float(low), float(high)


def verdict(low: float, high: float, higher_is_better: bool) -> str:
    """``a_better`` / ``b_better`` when the interval of A - B excludes 0 on that side (lower is better for HR_n), else ``no_difference``.

    A NaN bound (no users in the group, or B's mean 0 in :func:`pooled`) is ``undefined``: nothing was measured,
    which is not the same as measuring no difference.
    """
    if np.isnan(low) or np.isnan(high):
        return "undefined"
    better_if = 1 if higher_is_better else -1
    worst, best = sorted((better_if * low, better_if * high))  # the interval in "A better by" units
    return "a_better" if worst > 0 else "b_better" if best < 0 else "no_difference"


def pooled(logs: dict[str, pl.DataFrame], k: int, resamples: int = 10_000, seed: int = 0, confidence: float = 0.95) -> pl.DataFrame:
    """Per metric of a target group, A vs B over several logs: the mean over logs of the relative difference (A - B) / B.

    ``logs`` maps each log's name to its :func:`pair` frame. Each log weighs the same, whatever its size: the
    question is whether a choice holds across logs, not on the largest. The interval resamples each log as
    :func:`compare` does (its seeds crossed with one draw of its users, which every drawn seed shares: a user
    effect persists across seeds; A and B on the same draws), takes each log's relative difference of the
    resampled means and averages them over logs. Delta rows are left out: a relative change of a difference
    near 0 means nothing. A log where B's mean is 0 makes the row NaN and its verdict ``undefined``; a resample
    where only B's resampled mean is 0 counts as ``+inf`` (A infinitely better there), one where both are 0 as 0.
    """
    rows = []
    for metric in (m for m in paired_metrics(k) if m.sign != "delta"):
        points, resampled = [], []
        for index, paired in enumerate(logs.values()):
            a, b = (_by_seed(paired, metric.sign == "pos", f"{metric.gain}_{model}") for model in "ab")  # (S, U) each
            seed_draws = np.random.default_rng([seed, index]).integers(0, a.shape[0], size=(resamples, a.shape[0]))
            # the same generator state for A and B: both means come from the same resampled users
            a_means, b_means = (_resampled_means(x, seed_draws, np.random.default_rng([seed, index, metric.sign == "pos"])) for x in (a, b))
            with np.errstate(divide="ignore", invalid="ignore"):
                points.append((a.mean() - b.mean()) / b.mean() if a.size and b.mean() else np.nan)  # B at 0: undefined, not inf
                # a resample where B's mean is 0: +inf when A's is not (A infinitely better), no difference when it is 0 too
                resampled.append(np.where(a_means == b_means, 0.0, (a_means - b_means) / b_means))
        point = float(np.mean(points))
        low, high = _interval(np.mean(resampled, axis=0), confidence) if np.isfinite(point) else (np.nan, np.nan)
        rows.append(
            {"metric": metric.name, "label": metric.label, "logs": len(logs), "relative_diff": point,
             "ci_low": low, "ci_high": high, "verdict": verdict(low, high, metric.higher_is_better)}
        )
    return pl.DataFrame(rows)
