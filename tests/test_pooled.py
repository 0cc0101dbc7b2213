"""Decisions pooled over logs: :func:`negseq.studies.paired.pooled` on hand-made per-user frames, and
``python -m negseq.compare A B --data D1.yaml --data D2.yaml`` end to end on two tiny logs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from negseq.errors import ConfigError
from negseq.studies.compare import main as compare_main
from negseq.studies.paired import compare, pair, pooled
from negseq.studies.synthetic import generate
from tests.test_compare import write_config
from tests.test_paired import by_metric, per_user, synthetic

LABELS = ["HR_p@10", "NDCG_p@10", "HR_n@10", "NDCG_n@10"]  # Delta rows are not pooled


def ndcg(rank: int) -> float:
    return 1 / math.log2(rank + 1)


# two one-seed logs, means written out by hand (None: the target is not in the top 10)
#   log x: 4 liked-target users, A ranks 1, 2, -, 4 and B 1, -, -, -; 2 disliked-target users, A -, 1 and B 1, 1
#   log y: 2 liked-target users, A 1, - and B -, 3; 2 disliked-target users, A -, - and B 2, -
LOG_X = (per_user({1: [1, 2, None, 4, None, 1]}, [True] * 4 + [False] * 2), per_user({1: [1, None, None, None, 1, 1]}, [True] * 4 + [False] * 2))
LOG_Y = (per_user({1: [1, None, None, None]}, [True, True, False, False]), per_user({1: [None, 3, 2, None]}, [True, True, False, False]))


def logs(**frames: tuple[pl.DataFrame, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    return {name: pair(a, b) for name, (a, b) in frames.items()}


def test_the_pooled_point_is_the_mean_of_the_logs_relative_differences_by_hand():
    rows = by_metric(pooled(logs(x=LOG_X, y=LOG_Y), k=10, resamples=200))
    assert list(rows) == LABELS and {row["logs"] for row in rows.values()} == {2}
    hr_p = ((0.75 - 0.25) / 0.25 + (0.5 - 0.5) / 0.5) / 2  # 2.0 and 0.0
    ndcg_x_a, ndcg_x_b = (1 + ndcg(2) + ndcg(4)) / 4, 1 / 4
    ndcg_y_a, ndcg_y_b = 1 / 2, ndcg(3) / 2
    ndcg_p = ((ndcg_x_a - ndcg_x_b) / ndcg_x_b + (ndcg_y_a - ndcg_y_b) / ndcg_y_b) / 2
    hr_n = ((0.5 - 1.0) / 1.0 + (0.0 - 0.5) / 0.5) / 2  # -0.5 and -1.0
    ndcg_n = ((0.5 - 1.0) / 1.0 + (0.0 - ndcg(2) / 2) / (ndcg(2) / 2)) / 2
    got = {label: rows[label]["relative_diff"] for label in LABELS}
    assert got == pytest.approx({"HR_p@10": hr_p, "NDCG_p@10": ndcg_p, "HR_n@10": hr_n, "NDCG_n@10": ndcg_n})
    # the same as averaging each log's own comparison: every log weighs the same, not by its number of users
    per_log = [by_metric(compare(paired, k=10, resamples=10)) for paired in logs(x=LOG_X, y=LOG_Y).values()]
    for label in LABELS:
        assert got[label] == pytest.approx(np.mean([(r[label]["a"] - r[label]["b"]) / r[label]["b"] for r in per_log]))


def test_identical_models_on_two_logs_are_no_difference_with_an_exact_zero():
    a, _ = synthetic(3, 200, 0.0, seed=1)
    c, _ = synthetic(2, 80, 0.0, seed=2)
    rows = by_metric(pooled(logs(first=(a, a), second=(c, c)), k=10, resamples=500))
    for label in LABELS:
        row = rows[label]
        assert (row["relative_diff"], row["ci_low"], row["ci_high"], row["verdict"]) == (0.0, 0.0, 0.0, "no_difference")


def test_a_b_crippled_on_one_log_is_a_better_pooled():
    a, _ = synthetic(3, 400, 0.0, seed=3)
    other, _ = synthetic(2, 300, 0.0, seed=4)
    # B = A with every hit removed for half of the liked-target users of the first log; the second log identical
    half = pl.col("positive") & (pl.col("user_id").str.slice(1).cast(pl.Int64) < 200)
    crippled = a.with_columns(rank=pl.when(half).then(None).otherwise(pl.col("rank")))
    rows = by_metric(pooled(logs(first=(a, crippled), second=(other, other)), k=10, resamples=1000))
    assert rows["HR_p@10"]["verdict"] == rows["NDCG_p@10"]["verdict"] == "a_better"
    assert 0 < rows["HR_p@10"]["ci_low"] <= rows["HR_p@10"]["relative_diff"] <= rows["HR_p@10"]["ci_high"]
    # on the first log about half of B's hits are gone (A / B about 2), on the second none: a pooled relative difference near 0.5
    first = by_metric(compare(pair(a, crippled), k=10, resamples=10))["HR_p@10"]
    assert rows["HR_p@10"]["relative_diff"] == pytest.approx((first["a"] - first["b"]) / first["b"] / 2)
    assert 0.3 < rows["HR_p@10"]["relative_diff"] < 0.7
    # the disliked targets were not touched
    assert rows["HR_n@10"]["relative_diff"] == 0.0 and rows["HR_n@10"]["verdict"] == "no_difference"
    swapped = by_metric(pooled(logs(first=(crippled, a), second=(other, other)), k=10, resamples=1000))
    assert swapped["HR_p@10"]["verdict"] == "b_better"


def test_fewer_disliked_targets_promoted_is_a_better_on_the_negative_metrics():
    a, _ = synthetic(2, 400, 0.0, seed=5)
    # B ranks every disliked target first: far more disliked items in its top 10 on both logs
    worse = a.with_columns(rank=pl.when(~pl.col("positive")).then(1).otherwise(pl.col("rank")).cast(pl.Int32))
    rows = by_metric(pooled(logs(first=(a, worse), second=(a, worse)), k=10, resamples=1000))
    assert rows["HR_n@10"]["relative_diff"] < 0 and rows["HR_n@10"]["verdict"] == rows["NDCG_n@10"]["verdict"] == "a_better"
    assert rows["HR_p@10"]["verdict"] == "no_difference"


def test_shifted_ranks_lower_ndcg_but_not_hits():
    a, _ = synthetic(2, 400, 0.0, seed=6)
    # B: each liked target one place lower, but still in the top 10 (rank 10 stays 10)
    shifted = a.with_columns(rank=pl.when(pl.col("positive")).then((pl.col("rank") + 1).clip(upper_bound=10)).otherwise(pl.col("rank")))
    rows = by_metric(pooled(logs(first=(a, shifted), second=(a, shifted)), k=10, resamples=1000))
    assert rows["NDCG_p@10"]["verdict"] == "a_better" and rows["NDCG_p@10"]["relative_diff"] > 0
    assert rows["HR_p@10"]["relative_diff"] == 0.0 and rows["HR_p@10"]["verdict"] == "no_difference"


def test_a_log_whose_b_mean_is_zero_makes_the_row_nan():
    a, b = LOG_Y
    never = b.with_columns(rank=pl.when(pl.col("positive")).then(None).otherwise(pl.col("rank")))  # B hits no liked target
    rows = by_metric(pooled(logs(x=LOG_X, y=(a, never)), k=10, resamples=100))
    for label in ("HR_p@10", "NDCG_p@10"):
        assert math.isnan(rows[label]["relative_diff"]) and math.isnan(rows[label]["ci_low"]) and rows[label]["verdict"] == "undefined"
    assert not math.isnan(rows["HR_n@10"]["relative_diff"])  # the other group of that log is still defined


def test_a_weak_b_on_a_small_log_still_gets_an_interval_and_a_verdict():
    # B hits 3 of 100 liked targets: about 5 % of the resamples draw none of its hits, where (A - B) / B has no finite value
    positive = [True] * 100
    a = per_user({1: [1] * 50 + [None] * 50}, positive)
    weak = per_user({1: [2] * 3 + [None] * 97}, positive)
    rows = by_metric(pooled(logs(x=(a, weak), y=(a, a)), k=10, resamples=2000))
    assert rows["HR_p@10"]["relative_diff"] == pytest.approx(((0.5 - 0.03) / 0.03 + 0) / 2)
    assert rows["HR_p@10"]["verdict"] == "a_better" and 0 < rows["HR_p@10"]["ci_low"] < rows["HR_p@10"]["relative_diff"]
    assert rows["HR_p@10"]["ci_high"] == math.inf  # B at 0 in a resample: A infinitely better there
    # the weak model against itself: equal means are no difference, even in the resamples where both are 0
    same = by_metric(pooled(logs(x=(weak, weak), y=(a, a)), k=10, resamples=2000))["HR_p@10"]
    assert (same["relative_diff"], same["ci_low"], same["ci_high"], same["verdict"]) == (0.0, 0.0, 0.0, "no_difference")


def test_a_log_without_disliked_targets_leaves_the_negative_rows_undefined():
    only_liked = tuple(frame.filter("positive") for frame in LOG_Y)
    rows = by_metric(pooled(logs(x=LOG_X, y=only_liked), k=10, resamples=100))
    assert math.isnan(rows["HR_n@10"]["relative_diff"]) and rows["HR_n@10"]["verdict"] == "undefined"
    assert rows["HR_p@10"]["relative_diff"] == pytest.approx(1.0)


def test_pooled_resamples_are_seeded():
    a, b = synthetic(2, 60, 0.1, seed=7)
    frames = logs(first=(a, b), second=(b, a))
    assert pooled(frames, k=10, resamples=300, seed=3).equals(pooled(frames, k=10, resamples=300, seed=3))


# -- the command --

FAST = ["--model.dim", "16", "--data.max_len", "10", "--trainer.max_epochs", "5", "--trainer.min_epochs", "1",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


@pytest.fixture(scope="module")
def two_logs(tmp_path_factory) -> list[Path]:
    """Data configs of two small synthetic logs (different seeds and sizes) whose next liked item is learnable in a few epochs."""
    folder = tmp_path_factory.mktemp("logs")
    configs = []
    for name, events, users, seed in (("small", 5_000, 180, 0), ("other", 6_000, 200, 1)):
        log = folder / f"{name}.csv"
        generate(events, users=users, items=250, seed=seed).write_csv(log)
        config = folder / f"{name}.yaml"
        config.write_text(f"data:\n  path: {log}\n")
        configs.append(config)
    return configs


def test_two_data_configs_of_one_name_are_refused(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    first, second = (tmp_path / folder / "log.yaml" for folder in "xy")
    with pytest.raises(ConfigError, match=r"two --data configs share a file name \(\['log', 'log'\]\)"):
        compare_main(["a.yaml", "b.yaml", "--out", str(tmp_path / "out"), "--data", str(first), "--data", str(second)])
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_compare_over_two_logs_identical_and_crippled(tmp_path, two_logs, capsys, fits_in_process):
    a = write_config(tmp_path / "pnfrec.yaml", 0.005)
    same = write_config(tmp_path / "pnfrec_again.yaml", 0.005)
    crippled = write_config(tmp_path / "untrained.yaml", 0.0)
    out = tmp_path / "out"
    data = [arg for config in two_logs for arg in ("--data", str(config))]
    common = ["--seeds", "1", "--out", str(out), "--resamples", "2000", *data, "--", *FAST]

    result = compare_main([str(a), str(same), *common])
    assert capsys.readouterr().out.strip().splitlines()[-1] == json.dumps(result)  # NaN (no disliked target hit) compares as text
    assert result["metric"] == "test/ndcg_p@10" and result["seeds"] == 1
    assert (result["relative_diff"], result["ci_low"], result["ci_high"], result["verdict"]) == (0.0, 0.0, 0.0, "no_difference")
    assert set(result["metrics"]) == set(LABELS) and {m["verdict"] for m in result["metrics"].values()} == {"no_difference"}
    assert [entry["log"] for entry in result["logs"]] == ["small", "other"]
    for entry in result["logs"]:
        assert entry["metric"] == "test/ndcg_p@10" and entry["verdict"] == "no_difference" and entry["diff"] == 0.0 and entry["a"] > 0
        assert {m["verdict"] for m in entry["metrics"].values()} == {"no_difference"} and "Delta_HR@10" in entry["metrics"]
        assert entry["users"] == pl.read_parquet(out / entry["log"] / "runs/pnfrec/seed42/per_user.parquet").height
    assert result["logs"][0]["users"] != result["logs"][1]["users"]  # two different logs, each run on its own
    for name in ("small", "other"):
        assert "| NDCG_p@10 |" in (out / name / "COMPARE.md").read_text()
        assert {p.name for p in (out / name / "runs").iterdir()} == {"pnfrec", "pnfrec_again"}
    table = (out / "COMPARE.md").read_text()
    assert "on 2 logs" in table and "| HR_p@10 | small |" in table and "| HR_p@10 | other |" in table
    for name in ("small", "other"):  # a dominance line and a frontier picture per log
        assert f"- {name}: HR_p@10 with HR_n@10: **" in table and (out / name / "frontier.png").read_bytes().startswith(b"\x89PNG")
    assert "- pooled: HR_p@10 with HR_n@10: **" in table and "dominance" in result and "dominance" in result["logs"][0]
    assert "| **HR_p@10** | **pooled** (logs: 2 no_difference) |" in table and "| **HR_n@10** | **pooled** (logs: " in table
    assert "| Delta_HR@10" not in table and result["log_verdicts"]["HR_p@10"] == {"no_difference": 2}

    result = compare_main([str(a), str(crippled), *common])
    assert result["metrics"]["HR_p@10"]["verdict"] == "a_better" and result["metrics"]["HR_p@10"]["ci_low"] > 0
    assert result["verdict"] == "a_better" and result["relative_diff"] > 0
    assert all(entry["metrics"]["HR_p@10"]["a"] > entry["metrics"]["HR_p@10"]["b"] for entry in result["logs"])
    by_log = [entry["metrics"]["HR_p@10"]["verdict"] for entry in result["logs"]]  # the count of each log's verdict
    assert result["log_verdicts"]["HR_p@10"] == {verdict: by_log.count(verdict) for verdict in set(by_log)}
    assert "| **HR_p@10** | **pooled** (logs: " in (out / "COMPARE.md").read_text() and "**a_better**" in (out / "COMPARE.md").read_text()
