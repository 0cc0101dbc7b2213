"""Runs write per_user.parquet, and ``python -m negseq.compare`` pairs two configs' runs end to end; its dominance
rule, frontier picture and progress bar on hand-made tables, metrics and runs."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from negseq.errors import ConfigError
from negseq.fit import main as fit_main
from negseq.studies import compare as compare_module
from negseq.studies.compare import main as compare_main
from negseq.studies.frontier import curve_points, dominance, draw
from negseq.studies.paired import compare, pair
from negseq.studies.synthetic import generate
from tests.test_paired import per_user

FAST = ["--model.dim", "16", "--data.max_len", "10", "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


@pytest.fixture(scope="module")
def planted_log(tmp_path_factory) -> str:
    """A small synthetic log whose next liked item is learnable in a few epochs."""
    path = tmp_path_factory.mktemp("planted") / "log.csv"
    generate(6_000, users=200, items=300, seed=0).write_csv(path)
    return str(path)


def test_per_user_recomputes_the_test_metrics(tmp_path, planted_log):
    metrics = fit_main(["--data.path", planted_log, "--trainer.max_epochs", "2", "--trainer.default_root_dir", str(tmp_path), *FAST])
    (run_dir,) = tmp_path.iterdir()
    per_user = pl.read_parquet(run_dir / "per_user.parquet")
    assert per_user.columns == ["user_id", "item_id", "positive", "rank"]
    assert per_user.schema["user_id"] == pl.Int64 and per_user.schema["item_id"] == pl.Int64  # original ids and types
    assert per_user.schema["positive"] == pl.Boolean and per_user.schema["rank"] == pl.Int32
    assert per_user["user_id"].is_unique().all() and per_user["rank"].drop_nulls().is_between(1, 10).all()
    assert per_user["rank"].null_count() < per_user.height  # some targets are in the top 10 after training
    # the targets are the users' last events in the log
    log = pl.read_csv(planted_log).sort("user_id", "timestamp", maintain_order=True).group_by("user_id", maintain_order=True).last()
    assert per_user.join(log, on="user_id").select((pl.col("item_id") == pl.col("item_id_right")).all()).item()
    for sign, positive in (("p", True), ("n", False)):
        group = per_user.filter(pl.col("positive") == positive)
        assert group.height == metrics[f"test/n_users_{'pos' if positive else 'neg'}"]
        hits = group["rank"].is_not_null().mean()
        ndcg = (1.0 / (group["rank"].cast(pl.Float64) + 1.0).log(2)).fill_null(0.0).mean()
        mrr = (1.0 / group["rank"].cast(pl.Float64)).fill_null(0.0).mean()
        assert (hits, ndcg, mrr) == pytest.approx((metrics[f"test/hr_{sign}@10"], metrics[f"test/ndcg_{sign}@10"], metrics[f"test/mrr_{sign}@10"]), abs=1e-6)


def write_config(path: Path, lr: float) -> Path:
    path.write_text(f"model:\n  lr: {lr}\n")
    return path


@pytest.mark.slow
def test_compare_identical_and_crippled(tmp_path, planted_log, capsys, fits_in_process):
    a = write_config(tmp_path / "pnfrec.yaml", 0.005)
    same = write_config(tmp_path / "pnfrec_again.yaml", 0.005)
    crippled = write_config(tmp_path / "untrained.yaml", 0.0)
    out = tmp_path / "out"
    common = ["--seeds", "2", "--out", str(out), "--resamples", "2000", "--", "--data.path", planted_log, "--trainer.max_epochs", "3", *FAST]

    summary = compare_main([str(a), str(same), *common])
    captured = capsys.readouterr()
    assert json.loads(captured.out.strip().splitlines()[-1]) == summary
    assert captured.err.count("done: ") == 4 and "4/4" in captured.err  # one bar over both configs' two seeds, on stderr
    assert summary["metric"] == "test/ndcg_p@10" and summary["seeds"] == 2 and summary["verdict"] == "no_difference"
    assert summary["diff"] == 0.0 and summary["a"] == summary["b"] > 0
    assert summary["users"] == pl.read_parquet(out / "runs/pnfrec/seed42/per_user.parquet").height
    assert summary["dominance"] == {"HR@10": "neither", "NDCG@10": "neither"}  # no difference on every metric
    table = (out / "COMPARE.md").read_text()
    assert "| NDCG_p@10 |" in table and "| Delta_HR@10 |" in table
    assert "NDCG_p@10 with NDCG_n@10: **neither dominates**" in table and "![frontier](frontier.png)" in table
    assert (out / "frontier.png").read_bytes().startswith(b"\x89PNG")

    started = (out / "runs/pnfrec/seed42/metrics.json").stat().st_mtime
    summary = compare_main([str(a), str(crippled), *common])
    assert (out / "runs/pnfrec/seed42/metrics.json").stat().st_mtime == started  # A's finished runs were reused
    assert capsys.readouterr().err.count("done: ") == 2  # B's two new runs; A's counted as done from the start
    assert set(summary["dominance"]) == {"HR@10", "NDCG@10"}
    assert summary["verdict"] == "a_better" and summary["ci_low"] > 0 and summary["a"] > summary["b"]
    assert "| HR_p@10 |" in (out / "COMPARE.md").read_text() and "a_better" in (out / "COMPARE.md").read_text()
    assert not any(math.isnan(summary[key]) for key in ("a", "b", "diff", "ci_low", "ci_high"))


def test_same_named_configs_are_a_clean_error(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    a, b = write_config(tmp_path / "x" / "m.yaml", 0.001), write_config(tmp_path / "y" / "m.yaml", 0.0)
    result = subprocess.run(
        [sys.executable, "-m", "negseq.compare", str(a), str(b), "--out", str(tmp_path / "out")], capture_output=True, text=True
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "both configs are named 'm'" in result.stderr


# -- dominance, the frontier picture and the progress bar, without fits --


def verdicts(hr_p: str, hr_n: str, ndcg_p: str = "no_difference", ndcg_n: str = "no_difference") -> pl.DataFrame:
    """A comparison table reduced to what :func:`dominance` reads: each metric's verdict."""
    return pl.DataFrame({"metric": ["test/hr_p@10", "test/hr_n@10", "test/ndcg_p@10", "test/ndcg_n@10"], "verdict": [hr_p, hr_n, ndcg_p, ndcg_n]})


@pytest.mark.parametrize(
    ("hr_p", "hr_n", "expected"),
    [
        ("a_better", "no_difference", "a_dominates"),  # more liked items up, no more disliked ones
        ("no_difference", "a_better", "a_dominates"),  # fewer disliked items up (lower HR_n), liked ones alike
        ("a_better", "a_better", "a_dominates"),
        ("b_better", "no_difference", "b_dominates"),
        ("no_difference", "b_better", "b_dominates"),
        ("a_better", "b_better", "neither"),  # a trade: more liked items, and more disliked ones
        ("b_better", "a_better", "neither"),
        ("no_difference", "no_difference", "neither"),
        ("a_better", "undefined", "undecided"),  # nothing measured on disliked targets: "not worse" is unknown
        ("undefined", "no_difference", "undecided"),
    ],
)
def test_dominance_rule(hr_p, hr_n, expected):
    assert dominance(verdicts(hr_p, hr_n), k=10) == {"HR@10": expected, "NDCG@10": "neither"}
    assert dominance(verdicts("no_difference", "no_difference", hr_p, hr_n), k=10) == {"HR@10": "neither", "NDCG@10": expected}


def ranking_curve(*points: tuple[float, float, float, float, float]) -> list[dict]:
    """A metrics.json ranking_curve: per candidate (negative_scoring, hr_p, hr_n, ndcg_p, ndcg_n), other weights 0."""
    return [
        {"weights": {"negative_scoring": w, "dislike_demotion": 0.0, "polarity_prior": 0.0},
         "test/hr_p@10": hr_p, "test/hr_n@10": hr_n, "test/ndcg_p@10": ndcg_p, "test/ndcg_n@10": ndcg_n}
        for w, hr_p, hr_n, ndcg_p, ndcg_n in points
    ]


SEED_1 = {"test/hr_p@10": 0.5, "ranking_curve": ranking_curve((0, 0.5, 0.3, 0.2, 0.1), (0.5, 0.4, 0.2, 0.1, 0.05), (2, 0.2, 0.1, 0.1, None))}
SEED_2 = {"test/hr_p@10": 0.6, "ranking_curve": ranking_curve((0, 0.7, 0.5, 0.4, 0.3), (0.5, 0.6, 0.3, 0.3, 0.15), (2, 0.4, 0.0, 0.2, 0.0))}


def test_curve_points_are_the_candidates_means_over_seeds_by_hand():
    points = curve_points([SEED_1, SEED_2], k=10)
    assert [p["label"] for p in points] == ["λ=0", "λ=0.5", "λ=2"]  # only negative_scoring varies
    assert {p["line"] for p in points} == {""}  # one line
    assert [p["test/hr_p@10"] for p in points] == pytest.approx([0.6, 0.5, 0.3])
    assert [p["test/hr_n@10"] for p in points] == pytest.approx([0.4, 0.25, 0.05])
    assert [p["test/ndcg_p@10"] for p in points] == pytest.approx([0.3, 0.2, 0.15])
    assert points[1]["test/ndcg_n@10"] == pytest.approx(0.1) and math.isnan(points[2]["test/ndcg_n@10"])  # a seed without the metric
    assert curve_points([{"test/hr_p@10": 0.5}, {"test/hr_p@10": 0.6}], k=10) == []  # runs without a curve


def test_curve_points_name_every_varying_weight_and_refuse_runs_that_tried_different_ones():
    run = {"ranking_curve": ranking_curve((0, 0.5, 0.3, 0.2, 0.1), (1, 0.4, 0.2, 0.1, 0.05))}
    run["ranking_curve"][1]["weights"]["dislike_demotion"] = 0.5
    points = curve_points([run], k=10)
    assert [p["label"] for p in points] == ["negative_scoring=0, dislike_demotion=0", "negative_scoring=1, dislike_demotion=0.5"]
    assert [p["line"] for p in points] == ["negative_scoring=0", "negative_scoring=1"]  # one line per value of the first
    with pytest.raises(ConfigError, match="different ranking weights"):
        curve_points([SEED_1, run], k=10)
    with pytest.raises(ConfigError, match="different ranking weights"):
        curve_points([SEED_1, {"test/hr_p@10": 0.6}], k=10)  # a seed run before runs wrote the curve


@pytest.mark.parametrize("with_curve", [False, True])
def test_the_frontier_picture_is_a_png(tmp_path, with_curve):
    positive = [True, True, True, False, False]
    a = per_user({1: [1, 2, None, None, 5], 2: [1, None, 3, None, None]}, positive)
    b = per_user({1: [4, None, None, 1, 5], 2: [None, None, 3, 2, None]}, positive)
    table = compare(pair(a, b), 10, resamples=200)
    curves = {"pnfrec": curve_points([SEED_1, SEED_2], 10) if with_curve else [], "sasrec_p": []}
    path = draw(tmp_path / "frontier.png", table, "pnfrec", "sasrec_p", 10, curves)
    assert path.read_bytes().startswith(b"\x89PNG") and path.stat().st_size > 10_000


def test_one_progress_bar_counts_finished_runs_as_done(tmp_path, monkeypatch, capsys):
    def fake_run(configs, seed, run_dir, overrides, threads):
        run_dir.mkdir(parents=True)
        (run_dir / "metrics.json").write_text("{}")
        return run_dir

    monkeypatch.setattr(compare_module, "run_one", fake_run)
    jobs = [([Path("m.yaml")], seed, tmp_path / f"seed{seed}") for seed in range(3)]
    fake_run(None, 0, jobs[0][-1], None, None)  # finished before
    compare_module.run_all(jobs, [], parallel=2)
    out, err = capsys.readouterr()
    assert out == ""  # stdout stays for the tables and the JSON line
    lines = err.splitlines()
    assert sorted(lines[:-1]) == [f"done: {tmp_path / 'seed1'}", f"done: {tmp_path / 'seed2'}"]
    assert lines[-1].startswith("runs") and "3/3" in lines[-1]  # not a terminal: the bar once, at the end
