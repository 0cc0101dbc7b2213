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

from negseq.__main__ import main as negseq_main
from negseq.data import FeedbackDataModule
from negseq.errors import run_cli
from negseq.fit import main as fit_main

FAST = ["--model.dim", "16", "--data.max_len", "10", "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def refused(capsys, *args: str) -> tuple[int, str]:
    """``python -m negseq.fit args`` run in this process as its entry point runs it: the exit status and stderr."""
    with pytest.raises(SystemExit) as exit:
        run_cli(fit_main, list(args))
    return exit.value.code, capsys.readouterr().err


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
        "test/delta_hr@10", "test/delta_ndcg@10", "test/coverage@10", "test/list_change@10", "test/neighbour_suppression@10",
        "test/n_users_pos", "test/n_users_neg", "best_epoch", "fit_seconds",
        "val/hr_p@10", "val/ndcg_p@10", "val/mrr_p@10", "val/hr_n@10", "val/ndcg_n@10", "val/mrr_n@10",
        "val/delta_hr@10", "val/delta_ndcg@10", "val/coverage@10", "val/n_users_pos", "val/n_users_neg", "negative_scoring", "dislike_demotion", "polarity_prior", "sign_scoring",
    }
    assert metrics["val/n_users_neg"] == 0 and metrics["negative_scoring"] == 0.0  # the paper's validation: liked targets only
    # PNFRec reads no dislike at inference: a counterfactual dislike changes nothing but the disliked item's own place
    assert metrics["test/list_change@10"] == 0.0 and metrics["test/neighbour_suppression@10"] == 0.0
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


def test_the_shipped_config_is_the_default(tmp_path, capsys):
    root = Path(__file__).parents[1]

    def printed(*args: str) -> str:
        with pytest.raises(SystemExit) as exit:
            fit_main([*args, "--print_config"])
        assert exit.value.code in (0, None)
        return capsys.readouterr().out

    default = printed()
    shipped = printed("--config", str(root / "experiments/data/ml-latest-small.yaml"), "--config", str(root / "experiments/models/pnfrec.yaml"))

    def strip(text: str) -> dict:
        config = {k: v for k, v in yaml.safe_load(text).items() if k not in ("config", "run_name")}
        for section in ("early_stopping", "checkpoint"):  # "@k" is the model's k, as the CLI resolves it
            config[section]["monitor"] = config[section]["monitor"].replace("@k", f"@{config['model']['k']}")
        return config

    assert strip(default) == strip(shipped)
    # early stopping may not end a fit inside the validation plateau of the first epochs (experiments/QUALITY.md)
    assert strip(default)["trainer"]["min_steps"] == 300 and strip(default)["early_stopping"]["patience"] == 10


def test_bad_input_is_one_clean_line(tmp_path, capsys):
    bad = tmp_path / "log.csv"
    bad.write_text("user_id,item_id,score,timestamp\n1,2,4.0,10\n")
    code, stderr = refused(capsys, "--data.path", str(bad), "--trainer.default_root_dir", str(tmp_path / "runs"))
    assert code == 2  # a traceback would be another exception than SystemExit
    assert f"error: {bad}: missing feedback column 'rating'" in stderr
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir()), "no run directory is left behind"


def test_a_bad_ranking_argument_is_one_clean_line(tmp_path, capsys):
    code, stderr = refused(capsys, "--model.demotion_decay", "1.5", "--run_dir", str(tmp_path / "r"))
    assert code == 2
    assert "error: dislike_demotion must be >= 0, demotion_window >= 1 and demotion_decay in (0, 1], got 0.0, 5 and 1.5" in stderr


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


def test_negseq_fit_and_negseq_dot_fit_are_one_job(tmp_path, tiny_log, capsys):
    """`python -m negseq fit` runs the post-fit job too: the same files, the same metrics, the run directory last."""
    args = ["--data.path", tiny_log, "--trainer.max_epochs", "2", "--data.validation_targets", "all", "--select_negative_scoring", "[0.0, 1.0]", *FAST]
    outputs = {}
    for name, main in (("alias", fit_main), ("subcommand", lambda argv: negseq_main(["fit", *argv]))):  # each module's main
        main([*args, "--run_dir", str(tmp_path / name)])
        assert capsys.readouterr().out.strip().splitlines()[-1] == str(tmp_path / name)
        outputs[name] = tmp_path / name
    files = {name: sorted(p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file()) for name, d in outputs.items()}
    assert files["alias"] == files["subcommand"]
    assert {"metrics.json", "recommendations.parquet", "per_user.parquet", "selection.json", "config.yaml", "history.jsonl"} <= set(files["alias"])
    metrics = {name: json.loads((d / "metrics.json").read_text()) for name, d in outputs.items()}
    for key in metrics["alias"]:
        if key != "fit_seconds":
            assert metrics["alias"][key] == metrics["subcommand"][key], key
    for name in ("recommendations.parquet", "per_user.parquet"):
        assert pl.read_parquet(outputs["alias"] / name).equals(pl.read_parquet(outputs["subcommand"] / name))


def test_any_cutoff_end_to_end_on_the_shipped_data(tmp_path):
    """--model.k 5 names every metric, monitor and file column by 5; --model.ks adds cutoffs from the same ranking."""
    run_dir = tmp_path / "run"
    fit_main(["--model.k", "5", "--model.ks", "[3, 20]", "--trainer.max_epochs", "1", "--model.dim", "16", "--run_dir", str(run_dir), "--trainer.enable_progress_bar", "false"])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert not [key for key in metrics if key.endswith("@10")]
    for c in (3, 5, 20):
        assert {f"test/hr_p@{c}", f"test/ndcg_n@{c}", f"test/delta_hr@{c}", f"test/coverage@{c}", f"val/ndcg_p@{c}"} <= set(metrics)
    assert metrics["test/hr_p@3"] <= metrics["test/hr_p@5"] <= metrics["test/hr_p@20"]
    assert metrics["test/n_users_pos"] + metrics["test/n_users_neg"] == 305
    assert metrics["val/hr_n@5"] is None and metrics["val/delta_hr@5"] is None  # validation has no disliked target: no number
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["early_stopping"]["monitor"] == config["checkpoint"]["monitor"] == "val/ndcg_p@5"
    history = json.loads((run_dir / "history.jsonl").read_text().splitlines()[0])
    assert "val/ndcg_p@5" in history and "val/ndcg_p@20" in history

    # the exported top-5 and the ranks the metrics counted agree, user by user
    recommendations = pl.read_parquet(run_dir / "recommendations.parquet")
    assert recommendations.get_column("rank").max() == 5
    per_user = pl.read_parquet(run_dir / "per_user.parquet")
    assert per_user.schema == pl.Schema({"user_id": pl.Int64, "item_id": pl.Int64, "positive": pl.Boolean, "rank": pl.Int32})
    shown = per_user.join(recommendations.select("user_id", "item_id", shown="rank"), on=["user_id", "item_id"], how="left")
    assert shown.get_column("rank").eq_missing(shown.get_column("shown")).all()
    hit_rate = per_user.group_by("positive").agg(pl.col("rank").is_not_null().mean()).sort("positive").get_column("rank").to_list()
    assert hit_rate == pytest.approx([metrics["test/hr_n@5"], metrics["test/hr_p@5"]], abs=1e-6)


def test_a_monitor_that_is_not_logged_is_one_clean_line(tmp_path, capsys):
    code, stderr = refused(capsys, "--model.k", "5", "--early_stopping.monitor", "val/ndcg_p@10", "--run_dir", str(tmp_path / "r"))
    assert code == 2
    assert "error: --early_stopping.monitor val/ndcg_p@10 is not logged with --model.k 5" in stderr
    assert not (tmp_path / "r").exists(), "nothing is left behind"


@pytest.mark.parametrize("logger", ["lightning.pytorch.loggers.CSVLogger", "false"])
def test_any_logger_keeps_the_run_files_in_the_run_directory(tmp_path, tiny_log, logger):
    run_dir = tmp_path / "run"
    fit_main(["--data.path", tiny_log, "--trainer.max_epochs", "1", "--trainer.logger", logger, "--run_dir", str(run_dir), *FAST])
    assert {"config.yaml", "history.jsonl", "metrics.json", "recommendations.parquet", "per_user.parquet"} <= {p.name for p in run_dir.iterdir()}
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["data"]["path"] == tiny_log
    if logger != "false":
        assert list(run_dir.rglob("metrics.csv")), "the CSV logger writes under the run directory too"
