"""End-to-end runs through the command line, on a tiny log and on the embedded ml-latest-small."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml

from negseq.data import FeedbackDataModule
from negseq.fit import main as fit_main

FAST = ["--model.dim", "16", "--data.max_len", "10", "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def fit(tmp_path: Path, *extra: str) -> tuple[dict, Path]:
    metrics = fit_main(["--trainer.default_root_dir", str(tmp_path / "runs"), "--trainer.max_epochs", "2", *FAST, *extra])
    (run_dir,) = (tmp_path / "runs").iterdir()
    return metrics, run_dir


def test_fit_writes_run_files_that_agree(tmp_path, tiny_log):
    metrics, run_dir = fit(tmp_path, "--data.path", tiny_log, "--data.threshold", "4")
    assert {p.name for p in run_dir.iterdir()} >= {"metrics.json", "recommendations.parquet", "config.yaml", "history.jsonl", "checkpoints"}
    assert {p.name for p in (run_dir / "checkpoints").iterdir()} == {"best.ckpt", "last.ckpt"}
    assert json.loads((run_dir / "metrics.json").read_text()) == metrics
    assert set(metrics) == {
        "test/hr_p@10", "test/ndcg_p@10", "test/mrr_p@10", "test/hr_n@10", "test/ndcg_n@10", "test/mrr_n@10",
        "test/delta_hr@10", "test/delta_ndcg@10", "test/coverage@10", "test/n_users_pos", "test/n_users_neg", "best_epoch", "fit_seconds",
        "val/hr_p@10", "val/ndcg_p@10", "val/mrr_p@10", "val/hr_n@10", "val/ndcg_n@10", "val/mrr_n@10",
        "val/delta_hr@10", "val/delta_ndcg@10", "val/coverage@10", "val/n_users_pos", "val/n_users_neg", "negative_scoring",
    }
    assert metrics["val/n_users_neg"] == 0 and metrics["negative_scoring"] == 0.0  # the paper's validation: liked targets only
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in history] == [1, 2]
    assert {"train/loss", "train/loss_pos", "train/loss_neg", "train/loss_contrast", "val/ndcg_p@10", "epoch_seconds"} <= set(history[0])
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["model"]["alpha"] == 0.45 and config["data"]["max_len"] == 10

    # recompute HR_p@10 and HR_n@10 from the recommendations and the test targets, in original ids
    recommendations = pl.read_parquet(run_dir / "recommendations.parquet")
    assert recommendations.schema["user_id"] == pl.String and recommendations.schema["item_id"] == pl.Int64
    assert recommendations.group_by("user_id").agg(pl.col("rank").sort()).get_column("rank").to_list()[0] == list(range(1, 11))
    data = FeedbackDataModule(path=tiny_log, threshold=4, max_len=10)
    test = data.test_sequences
    targets = data.decode(test.user.tolist(), test.target.tolist()).with_columns(positive=pl.Series(test.target_positive.tolist()))
    hits = targets.join(recommendations, on=["user_id", "item_id"], how="left").with_columns(hit=pl.col("rank").is_not_null())
    by_sign = {row["positive"]: row for row in hits.group_by("positive").agg(pl.col("hit").mean(), pl.len()).to_dicts()}
    assert metrics["test/n_users_pos"] == by_sign[True]["len"] and metrics["test/n_users_neg"] == by_sign[False]["len"]
    assert metrics["test/hr_p@10"] == pytest.approx(by_sign[True]["hit"], abs=1e-6)
    assert metrics["test/hr_n@10"] == pytest.approx(by_sign[False]["hit"], abs=1e-6)
    assert metrics["test/delta_hr@10"] == pytest.approx(by_sign[True]["hit"] - by_sign[False]["hit"], abs=1e-6)


def test_the_shipped_config_is_the_default(tmp_path):
    root = Path(__file__).parents[1]
    args = ["--print_config"]
    default = subprocess.run([sys.executable, "-m", "negseq.fit", *args], capture_output=True, text=True, check=True).stdout
    shipped = subprocess.run(
        [sys.executable, "-m", "negseq.fit", "--config", str(root / "experiments/data/ml-latest-small.yaml"), "--config", str(root / "experiments/models/pnfrec.yaml"), *args],
        capture_output=True, text=True, check=True,
    ).stdout
    strip = lambda text: {k: v for k, v in yaml.safe_load(text).items() if k not in ("config", "run_name")}  # noqa: E731
    assert strip(default) == strip(shipped)


def test_bad_input_is_one_clean_line(tmp_path):
    bad = tmp_path / "log.csv"
    bad.write_text("user_id,item_id,score,timestamp\n1,2,4.0,10\n")
    result = subprocess.run(
        [sys.executable, "-m", "negseq.fit", "--data.path", str(bad), "--trainer.default_root_dir", str(tmp_path / "runs")],
        capture_output=True, text=True,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"error: {bad}: missing feedback column 'rating'" in result.stderr
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir()), "no run directory is left behind"


@pytest.mark.slow
def test_default_job_on_embedded_data_offline_wandb(tmp_path):
    """`python -m negseq.fit` on ml-latest-small with WANDB_MODE unset and no API key: W&B goes offline, never hangs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env["HOME"] = str(tmp_path)  # no ~/.netrc credentials
    result = subprocess.run(
        [sys.executable, "-m", "negseq.fit", "--trainer.max_epochs", "2", "--trainer.default_root_dir", str(tmp_path / "runs")],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = Path(result.stdout.strip().splitlines()[-1])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test/n_users_pos"] + metrics["test/n_users_neg"] == 305
    assert 0.0 <= metrics["test/hr_p@10"] <= 1.0
    assert list((run_dir / "wandb").glob("offline-run-*")), "the offline W&B run should land in the run directory"
