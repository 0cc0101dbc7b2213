"""Paired comparison statistics on hand-made per-user frames."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from negseq.studies.paired import PairingError, _interval, _resampled_means, compare, gains, pair, verdict


def per_user(ranks: dict[int, list], positive: list[bool]) -> pl.DataFrame:
    """A per_user frame per seed: ``ranks[seed][u]`` is user u's rank (None = outside the top k)."""
    return pl.concat(
        pl.DataFrame(
            {"user_id": [f"u{u}" for u in range(len(r))], "item_id": list(range(100, 100 + len(r))), "positive": positive, "rank": r, "seed": seed},
            schema_overrides={"rank": pl.Int32},
        )
        for seed, r in ranks.items()
    )


def by_metric(table: pl.DataFrame) -> dict[str, dict]:
    return {row["label"]: row for row in table.iter_rows(named=True)}


def test_gains_by_hand():
    frame = gains(per_user({1: [1, 3, None]}, [True, True, False]))
    assert frame["hr"].to_list() == [1.0, 1.0, 0.0]
    assert frame["ndcg"].to_list() == pytest.approx([1.0, 0.5, 0.0])  # 1/log2(3 + 1) = 0.5
    assert frame["mrr"].to_list() == pytest.approx([1.0, 1 / 3, 0.0])


def test_means_and_differences_by_hand():
    positive = [True, True, False, False]
    a = per_user({1: [1, None, None, 3], 2: [1, 1, None, None]}, positive)
    b = per_user({1: [None, None, 1, 1], 2: [3, None, 1, None]}, positive)
    rows = by_metric(compare(pair(a, b), k=10, resamples=200))
    # HR_p: A hits 3 of 4 (seed, liked-target user) rows, B 1 of 4
    assert (rows["HR_p@10"]["a"], rows["HR_p@10"]["b"], rows["HR_p@10"]["diff"]) == pytest.approx((0.75, 0.25, 0.5))
    assert rows["NDCG_p@10"]["a"] == pytest.approx(0.75) and rows["NDCG_p@10"]["b"] == pytest.approx(0.125)
    # HR_n: A 1 of 4, B 3 of 4: A promotes fewer disliked items
    assert (rows["HR_n@10"]["a"], rows["HR_n@10"]["b"]) == pytest.approx((0.25, 0.75))
    assert rows["NDCG_n@10"]["a"] == pytest.approx(0.5 / 4) and rows["NDCG_n@10"]["b"] == pytest.approx((1 + 1 + 1) / 4)
    assert (rows["Delta_HR@10"]["a"], rows["Delta_HR@10"]["b"], rows["Delta_HR@10"]["diff"]) == pytest.approx((0.5, -0.5, 1.0))
    assert rows["HR_p@10"]["metric"] == "test/hr_p@10"
    for row in rows.values():
        assert row["ci_low"] <= row["diff"] <= row["ci_high"]


def synthetic(n_seeds: int, n_users: int, effect: float, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A and B per-user frames where A's chance of a hit on a liked target is higher by ``effect`` (and lower on a disliked one)."""
    rng = np.random.default_rng(seed)
    positive = [bool(u % 2) for u in range(n_users)]
    sign = np.where(positive, 1.0, -1.0)
    ranks_a, ranks_b = {}, {}
    for s in range(n_seeds):
        ranks_a[s] = [int(r) if hit else None for hit, r in zip(rng.random(n_users) < 0.3 + sign * effect / 2, rng.integers(1, 11, n_users))]
        ranks_b[s] = [int(r) if hit else None for hit, r in zip(rng.random(n_users) < 0.3 - sign * effect / 2, rng.integers(1, 11, n_users))]
    return per_user(ranks_a, positive), per_user(ranks_b, positive)


def test_identical_models_no_difference_with_an_exact_zero():
    a, _ = synthetic(3, 200, 0.0)
    rows = by_metric(compare(pair(a, a), k=10, resamples=500))
    for row in rows.values():
        assert (row["diff"], row["ci_low"], row["ci_high"], row["verdict"]) == (0.0, 0.0, 0.0, "no_difference")


def test_verdicts_follow_each_metric_direction():
    a, b = synthetic(4, 600, 0.25)
    rows = by_metric(compare(pair(a, b), k=10, resamples=1000))
    assert {label: row["verdict"] for label, row in rows.items()} == {
        "HR_p@10": "a_better", "NDCG_p@10": "a_better", "HR_n@10": "a_better", "NDCG_n@10": "a_better",
        "Delta_HR@10": "a_better", "Delta_NDCG@10": "a_better",
    }
    assert rows["HR_n@10"]["diff"] < 0  # A lower on a lower-is-better metric
    swapped = by_metric(compare(pair(b, a), k=10, resamples=1000))
    assert {row["verdict"] for row in swapped.values()} == {"b_better"}


def test_interval_narrows_with_more_seeds():
    widths = []
    for n_seeds in (2, 16):
        a, b = synthetic(n_seeds, 100, 0.05, seed=n_seeds)
        row = by_metric(compare(pair(a, b), k=10, resamples=2000))["HR_p@10"]
        widths.append(row["ci_high"] - row["ci_low"])
    assert widths[1] < widths[0] / 2  # 8x the seeds: about 1/sqrt(8) the width


def test_resamples_are_seeded():
    a, b = synthetic(2, 50, 0.1)
    assert compare(pair(a, b), k=10, resamples=300, seed=3).equals(compare(pair(a, b), k=10, resamples=300, seed=3))


def test_unpaired_users_and_different_targets_are_errors():
    a, b = synthetic(1, 10, 0.0)
    with pytest.raises(PairingError, match="one model's per_user.parquet only"):
        pair(a, b.filter(pl.col("user_id") != "u3"))
    with pytest.raises(PairingError, match="different held-out target"):
        pair(a, b.with_columns(item_id=pl.col("item_id") + 1))
    with pytest.raises(PairingError, match="repeat a \\(seed, user_id\\)"):
        pair(pl.concat([a, a]), b)


def test_seeds_with_different_users_are_an_error():
    a, b = synthetic(2, 10, 0.0)
    a, b = (frame.filter(~((pl.col("seed") == 1) & (pl.col("user_id") == "u3"))) for frame in (a, b))
    with pytest.raises(PairingError, match="different test users"):
        compare(pair(a, b), k=10, resamples=10)


def test_no_disliked_targets_leaves_negative_metrics_undefined():
    a, b = synthetic(1, 10, 0.0)
    rows = by_metric(compare(pair(*(frame.filter("positive") for frame in (a, b))), k=10, resamples=10))
    assert math.isnan(rows["HR_n@10"]["a"]) and math.isnan(rows["HR_n@10"]["ci_low"]) and rows["HR_n@10"]["verdict"] == "undefined"
    assert rows["Delta_HR@10"]["verdict"] == "undefined"  # pos - neg without a neg
    assert not math.isnan(rows["HR_p@10"]["a"])


def test_interval_holds_the_spread_between_seeds():
    # A hits every liked target in seed 0 and none in seed 1, B never: no spread within a seed, all of it between seeds
    positive = [True] * 50
    a = per_user({0: [1] * 50, 1: [None] * 50}, positive)
    b = per_user({0: [None] * 50, 1: [None] * 50}, positive)
    row = by_metric(compare(pair(a, b), k=10, resamples=2000))["HR_p@10"]
    assert row["diff"] == 0.5
    assert (row["ci_low"], row["ci_high"]) == (0.0, 1.0) and row["verdict"] == "no_difference"


def test_a_nan_interval_is_undefined_not_no_difference():
    for higher_is_better in (True, False):
        assert verdict(math.nan, math.nan, higher_is_better) == verdict(0.1, math.nan, higher_is_better) == "undefined"
    assert verdict(-0.1, 0.1, True) == "no_difference"


def test_more_seeds_of_the_same_users_do_not_narrow_a_per_user_difference():
    # A hits the liked target of the first 20 users and B of the next 10, the same in every seed: all of the
    # spread is between users, and more seeds of the same users say nothing more about it
    positive = [True] * 50
    a, b = ([1] * 20 + [None] * 30, [None] * 20 + [1] * 10 + [None] * 20)
    widths = []
    for n_seeds in (2, 16):
        paired = pair(per_user(dict.fromkeys(range(n_seeds), a), positive), per_user(dict.fromkeys(range(n_seeds), b), positive))
        row = by_metric(compare(paired, k=10, resamples=2000))["HR_p@10"]
        widths.append(row["ci_high"] - row["ci_low"])
    assert row["diff"] == pytest.approx(0.2) and widths[0] == widths[1] > 0.2


def test_the_interval_covers_a_zero_difference_with_a_user_effect_that_persists_across_seeds():
    # A - B per (seed, user) = seed effect + user effect (the same in every seed) + noise, the true mean 0.
    # The crossed draw (users drawn once per resample, shared by its seeds) must cover 0 about 95 % of the
    # time; users drawn anew in each drawn seed (nested, as before) average the user effect away over seeds.
    n_users, n_seeds, repetitions, resamples = 100, 10, 300, 400
    rng = np.random.default_rng(0)

    def nested(values: np.ndarray, seed_draws: np.ndarray, users: np.random.Generator) -> np.ndarray:
        drawn = users.integers(0, n_users, size=(len(seed_draws), n_seeds, n_users))
        return values[seed_draws[:, :, None], drawn].mean(axis=(1, 2))

    covered = {_resampled_means: 0, nested: 0}
    for repetition in range(repetitions):
        diff = rng.normal(0, 0.005, (n_seeds, 1)) + rng.normal(0, 0.1, (1, n_users)) + rng.normal(0, 0.1, (n_seeds, n_users))
        seed_draws = rng.integers(0, n_seeds, size=(resamples, n_seeds))
        for draw in covered:
            low, high = _interval(draw(diff, seed_draws, np.random.default_rng([repetition])), 0.95)
            covered[draw] += low <= 0 <= high
    crossed, nested_coverage = covered[_resampled_means] / repetitions, covered[nested] / repetitions
    assert crossed >= 0.93 and nested_coverage < 0.90, (crossed, nested_coverage)
