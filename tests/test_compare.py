"""Runs write per_user.parquet, and ``python -m negseq.compare`` pairs two configs' runs end to end."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from negseq.compare import main as compare_main
from negseq.synthetic import generate
from negseq.fit import main as fit_main

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
def test_compare_identical_and_crippled(tmp_path, planted_log, capsys):
    a = write_config(tmp_path / "pnfrec.yaml", 0.005)
    same = write_config(tmp_path / "pnfrec_again.yaml", 0.005)
    crippled = write_config(tmp_path / "untrained.yaml", 0.0)
    out = tmp_path / "out"
    common = ["--seeds", "2", "--out", str(out), "--resamples", "2000", "--", "--data.path", planted_log, "--trainer.max_epochs", "3", *FAST]

    summary = compare_main([str(a), str(same), *common])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == summary
    assert summary["metric"] == "test/ndcg_p@10" and summary["seeds"] == 2 and summary["verdict"] == "no_difference"
    assert summary["diff"] == 0.0 and summary["a"] == summary["b"] > 0
    assert summary["users"] == pl.read_parquet(out / "runs/pnfrec/seed42/per_user.parquet").height
    table = (out / "COMPARE.md").read_text()
    assert "| NDCG_p@10 |" in table and "| Delta_HR@10 |" in table

    started = (out / "runs/pnfrec/seed42/metrics.json").stat().st_mtime
    summary = compare_main([str(a), str(crippled), *common])
    assert (out / "runs/pnfrec/seed42/metrics.json").stat().st_mtime == started  # A's finished runs were reused
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
