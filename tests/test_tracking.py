"""W&B: the mode decided before wandb starts, what an offline run records, the run id of a run directory, the sweep."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
import yaml
from offline_runs import read_offline_run  # tests/offline_runs.py

from negseq import analysis, layout
from negseq.fit import main as fit_main
from negseq.training import tracking

ROOT = Path(__file__).parents[1]
FAST = ["--model.dim", "16", "--data.max_len", "10", "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def make_log():
    """tests/conftest.py's ``make_log``, for fixtures wider than one test (``tiny_log`` is per test)."""
    spec = importlib.util.spec_from_file_location("_negseq_tests_conftest", Path(__file__).with_name("conftest.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_log()


# -- the mode --


@pytest.fixture
def no_wandb_env(monkeypatch, tmp_path):
    """No WANDB_* variable and a HOME without ~/.netrc."""
    for name in list(os.environ):
        if name.startswith("WANDB_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("mode", ["online", "offline", "disabled"])
def test_mode_from_wandb_mode_wins_without_probing(monkeypatch, no_wandb_env, mode):
    monkeypatch.setenv("WANDB_MODE", mode)
    monkeypatch.setattr(tracking, "host_reachable", lambda *a, **k: pytest.fail("WANDB_MODE set: no probe"))
    assert tracking.wandb_mode() == mode


def test_mode_with_api_key_is_online_only_when_the_host_answers(monkeypatch, no_wandb_env):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert tracking.has_api_key()
    monkeypatch.setattr(tracking, "host_reachable", lambda *a, **k: True)
    assert tracking.wandb_mode() == "online"
    monkeypatch.setattr(tracking, "host_reachable", lambda *a, **k: False)
    assert tracking.wandb_mode() == "offline"


def test_mode_with_netrc_credentials(monkeypatch, no_wandb_env):
    netrc = no_wandb_env / ".netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    netrc.chmod(0o600)
    monkeypatch.setattr(tracking, "host_reachable", lambda *a, **k: True)
    assert tracking.has_api_key()
    assert tracking.wandb_mode() == "online"
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.org")  # credentials for another host do not count
    assert not tracking.has_api_key()
    assert tracking.wandb_mode() == "offline"


def test_mode_without_credentials_is_offline_without_probing(monkeypatch, no_wandb_env):
    monkeypatch.setattr(tracking, "host_reachable", lambda *a, **k: pytest.fail("no credentials: no probe"))
    assert not tracking.has_api_key()
    assert tracking.wandb_mode() == "offline"


def test_host_probe_is_quick_and_real(monkeypatch, no_wandb_env):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")
        assert tracking.host_reachable(timeout=2.0)
    started = time.perf_counter()
    assert not tracking.host_reachable(timeout=1.0)  # the port is closed now
    monkeypatch.setenv("WANDB_BASE_URL", "https://host.invalid")
    assert not tracking.host_reachable(timeout=1.0)
    assert time.perf_counter() - started < 4.0


# -- the run id of a run directory --


def test_stable_run_id_per_run_directory(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_RUN_ID", raising=False)
    first = tracking.stable_run_id(tmp_path / "a")
    assert first == tracking.stable_run_id(tmp_path / "a") == (tmp_path / "a" / "wandb-id").read_text().strip()
    assert len(first) == 8 and first.isalnum()
    assert tracking.stable_run_id(tmp_path / "b") != first
    monkeypatch.setenv("WANDB_RUN_ID", "sweeprun")  # wandb agent's id for a sweep run wins and is recorded
    assert tracking.stable_run_id(tmp_path / "c") == "sweeprun"
    assert (tmp_path / "c" / "wandb-id").read_text().strip() == "sweeprun"


def test_logger_takes_the_run_directory_id(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_RUN_ID", raising=False)
    logger = tracking.WandbLogger(save_dir=str(tmp_path / "run"), project="p", mode="offline")
    again = tracking.WandbLogger(save_dir=str(tmp_path / "run"), project="p", mode="offline")
    assert logger._wandb_init["id"] == again._wandb_init["id"] == (tmp_path / "run" / "wandb-id").read_text().strip()
    assert logger._wandb_init["mode"] == "offline" and logger._wandb_init["resume"] == "allow"
    assert tracking.WandbLogger(save_dir=str(tmp_path / "run"), id="mine", mode="offline")._wandb_init["id"] == "mine"
    tracking.WandbLogger(save_dir=str(tmp_path / "off"), mode="disabled")
    assert not (tmp_path / "off" / "wandb-id").exists()


# -- what an offline run records --


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory):
    """One tiny fit with W&B offline: (run directory, the offline run read back)."""
    tmp = tmp_path_factory.mktemp("offline")
    log = tmp / "log.csv"
    make_log().write_csv(log)
    run_dir = tmp / "runs" / "tiny"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WANDB_MODE", "offline")
        patch.setenv("WANDB_SILENT", "true")
        patch.delenv("WANDB_RUN_ID", raising=False)
        fit_main(["--data.path", str(log), "--run_dir", str(run_dir), "--trainer.max_epochs", "2", *FAST])
    run = read_offline_run(run_dir, wait=30)
    assert run["finished"]
    return run_dir, run


def test_offline_run_lands_in_the_run_directory_with_its_id(offline_run):
    run_dir, run = offline_run
    (folder,) = (run_dir / "wandb").glob("offline-run-*")
    assert folder.name.endswith(run["id"])
    assert run["id"] == (run_dir / "wandb-id").read_text().strip()
    assert run["name"] == "negseq"


def test_run_config_is_the_whole_resolved_config_logged_once(offline_run):
    run_dir, run = offline_run
    config = run["config"]
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    for key, value in saved.items():
        if key != "model":
            assert config[key] == value, key
    assert {k: v for k, v in config["model"].items() if k in saved["model"]} == saved["model"]
    # sizes linked from the data at instantiation are in the model section too
    assert config["model"]["num_items"] == 30 and config["model"]["num_train_items"] == 30
    assert config["trainer"]["logger"]["class_path"] == "negseq.training.tracking.WandbLogger"
    # one config update, and the module's flat hyper-parameters never land beside it
    assert run["config_updates"] == 1
    assert not {"alpha", "beta", "num_items", "dim"} & set(config)


def test_every_loss_term_and_validation_metric_per_epoch(offline_run):
    run_dir, run = offline_run
    per_epoch = {}
    for row in run["history"]:
        for key in row:
            if key.startswith("val/") or (key.startswith("train/") and not key.endswith("_step")):
                per_epoch.setdefault(key, []).append(row.get("epoch"))
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    expected = {("train/loss_epoch" if k == "train/loss" else k) for k in history[0] if k.startswith(("train/", "val/"))}
    assert {"train/loss_epoch", "train/loss_pos", "train/loss_neg", "train/loss_contrast", "val/ndcg_p@10", "val/hr_n@10", "val/coverage@10"} <= expected
    assert per_epoch.pop(layout.best_monitor_key(10)) == [None]  # logged once, at the end
    assert set(per_epoch) == expected
    assert all(epochs == [0, 1] for epochs in per_epoch.values())  # Lightning's 0-based epoch: once per epoch each


def test_summary_holds_the_test_metrics_and_the_best_validation_score(offline_run):
    run_dir, run = offline_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["val/hr_n@10"] is None  # no disliked validation target: no number (the per-epoch curve logged NaN)
    for key, value in metrics.items():
        if value is None:
            assert key not in run["summary"] or math.isnan(run["summary"][key]), key
        else:
            assert run["summary"][key] == pytest.approx(value), key
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert run["summary"][layout.best_monitor_key(10)] == pytest.approx(max(row["val/ndcg_p@10"] for row in history))


def test_recommendations_table_of_sampled_test_users(offline_run):
    run_dir, run = offline_run
    entry = run["summary"][tracking.TABLE_KEY]
    assert entry["_type"] == "table-file"
    (folder,) = (run_dir / "wandb").glob("offline-run-*")
    table = json.loads((folder / "files" / entry["path"]).read_text())
    assert table["columns"] == ["user_id", "rank", "item_id", "score", "held_out"]  # the tiny log has no titles
    rows = pl.DataFrame(table["data"], schema=table["columns"], orient="row")
    written = pl.read_parquet(run_dir / "recommendations.parquet").with_columns(pl.col("user_id", "item_id").cast(pl.String))
    assert rows.get_column("user_id").n_unique() == min(20, written.get_column("user_id").n_unique())
    assert rows.height == entry["nrows"]
    assert rows.select("user_id", "rank", "item_id").sort("user_id", "rank").equals(
        written.join(rows.select("user_id").unique(), on="user_id").select("user_id", "rank", pl.col("item_id")).sort("user_id", "rank").cast({"rank": pl.Int64})
    )
    data = analysis.run_datamodule(run_dir)
    targets = data.test_targets().with_columns(pl.col("user_id", "item_id").cast(pl.String))
    marked = rows.filter(pl.col("held_out") != "").join(targets, on=["user_id", "item_id"])
    assert marked.height == rows.filter(pl.col("held_out") != "").height
    assert all((row["held_out"] == "liked") == row["positive"] for row in marked.iter_rows(named=True))
    hits = targets.join(written.select("user_id", "item_id"), on=["user_id", "item_id"]).join(rows.select("user_id").unique(), on="user_id")
    assert hits.height == marked.height  # every held-out item in a sampled top-10 is marked


def test_table_has_titles_when_the_data_has_them(tmp_path):
    folder = tmp_path / "ml"
    folder.mkdir()
    log = make_log().rename({"user_id": "userId", "item_id": "movieId"})  # a MovieLens ratings.csv: movies.csv beside it titles it
    log.write_csv(folder / "ratings.csv")
    pl.DataFrame({"movieId": list(range(100, 130)), "title": [f"Movie {i}" for i in range(100, 130)], "genres": ["Drama"] * 30}).write_csv(folder / "movies.csv")
    from negseq.data import FeedbackDataModule

    data = FeedbackDataModule(path=str(folder / "ratings.csv"), max_len=10)
    targets = data.test_targets()
    recommendations = targets.select("user_id", "item_id").with_columns(rank=pl.lit(1, dtype=pl.Int32), score=pl.lit(1.0, dtype=pl.Float32))
    rows = tracking.recommendations_table_rows(recommendations, data, n_users=5)
    assert rows.columns == ["user_id", "rank", "item_id", "title", "score", "held_out"]
    assert rows.height == 5
    assert rows.get_column("title").to_list() == [f"Movie {i}" for i in rows.get_column("item_id")]
    assert set(rows.get_column("held_out")) <= {"liked", "disliked"} and "" not in set(rows.get_column("held_out"))


def test_a_movies_csv_beside_another_log_is_not_its_titles(tmp_path):
    """A generic log whose integer item ids happen to match a movies.csv beside it gets no titles (#24, 10)."""
    make_log().write_csv(tmp_path / "log.csv")
    pl.DataFrame({"movieId": list(range(100, 130)), "title": [f"Movie {i}" for i in range(100, 130)]}).write_csv(tmp_path / "movies.csv")
    from negseq.data import FeedbackDataModule

    data = FeedbackDataModule(path=str(tmp_path / "log.csv"), max_len=10)
    assert data.catalog.titles is None
    recommendations = data.test_targets().select("user_id", "item_id").with_columns(rank=pl.lit(1, dtype=pl.Int32), score=pl.lit(1.0, dtype=pl.Float32))
    assert "title" not in tracking.recommendations_table_rows(recommendations, data, n_users=5).columns


def test_embedded_and_movielens_dat_titles(tmp_path):
    from negseq.data.datamodule import embedded_ratings

    titles = analysis.item_titles()
    assert titles.filter(pl.col("item_id") == 1).get_column("title").item() == "Toy Story (1995)"
    assert analysis.item_titles(embedded_ratings()).equals(titles)  # what a run on the default data finds
    assert titles.height > 9000
    (tmp_path / "movies.dat").write_bytes("1::Toy Story (1995)::Animation\n2::Caf\xe9 (2000)::Drama\n".encode("latin-1"))
    dat = analysis.item_titles(tmp_path / "ratings.dat")
    assert dat.get_column("title").to_list() == ["Toy Story (1995)", "Café (2000)"]
    assert analysis.item_titles(tmp_path / "elsewhere" / "log.csv") is None


def test_wandb_loaders_read_what_a_run_sent(offline_run, tmp_path):
    """load_wandb_* on an API stand-in that serves the offline run's own records, then merged with the local run once."""
    run_dir, run = offline_run
    (folder,) = (run_dir / "wandb").glob("offline-run-*")

    class File:
        def __init__(self, path):
            self.path = path

        def download(self, root, replace=False):
            target = Path(root) / self.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes((folder / "files" / self.path).read_bytes())
            return target.open()

    class Run:
        id, name, state, path = run["id"], run["name"], "finished", ["me", "negseq", run["id"]]
        config, summary_metrics = run["config"], run["summary"]

        def scan_history(self):
            return iter(run["history"])

        def file(self, path):
            return File(path)

    class Api:
        def runs(self, path):
            assert path == "me/negseq"
            return [Run()]

    remote = analysis.load_wandb_runs("negseq", "me", api=Api())
    local = analysis.load_runs(run_dir.parent)
    assert remote.get_column("run_dir").to_list() == [f"wandb:me/negseq/{run['id']}"]
    for column in ("config", "model", "seed", "dataset", "model.family", "data.max_len"):
        assert remote.get_column(column).to_list() == local.get_column(column).to_list(), column
    for column in ("model.alpha", *analysis.METRIC_COLUMNS):
        assert remote.get_column(column).to_list() == pytest.approx(local.get_column(column).to_list()), column

    history = analysis.load_wandb_history("negseq", "me", api=Api())
    local_history = analysis.load_history(run_dir.parent)
    assert history.get_column("epoch").to_list() == [1, 2]
    for column in ("train/loss", "train/loss_pos", "train/loss_neg", "train/loss_contrast", "val/ndcg_p@10", "val/hr_n@10"):
        assert history.get_column(column).to_list() == pytest.approx(local_history.get_column(column).to_list(), nan_ok=True), column

    table = analysis.load_wandb_recommendations("negseq", "me", api=Api())
    assert table.height == run["summary"][tracking.TABLE_KEY]["nrows"]
    assert {"user_id", "rank", "item_id", "score", "held_out", "run_dir", "model", "seed"} <= set(table.columns)

    # the same run, local and in W&B, counts once; a W&B-only run is added
    assert analysis.combine_runs(local, remote).height == 1
    assert analysis.combine_runs(local_history, history).height == 2
    other = remote.with_columns(wandb_id=pl.lit("other"), run_dir=pl.lit("wandb:me/negseq/other"))
    assert analysis.combine_runs(local, other).height == 2


def test_a_missing_wandb_project_reads_as_no_runs():
    class Api:
        def runs(self, path):
            raise ValueError(f"Could not find project {path}")

    with pytest.warns(UserWarning, match="Could not find project nowhere"):
        assert analysis.load_wandb_runs("nowhere", api=Api()).is_empty()


# -- resuming --


def test_rerun_in_the_same_run_directory_continues_the_same_wandb_run(monkeypatch, tmp_path, tiny_log):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_RUN_ID", raising=False)
    run_dir = tmp_path / "run"
    fit_main(["--data.path", tiny_log, "--run_dir", str(run_dir), "--trainer.max_epochs", "1", *FAST])
    fit_main(["--data.path", tiny_log, "--run_dir", str(run_dir), "--trainer.max_epochs", "2", "--ckpt_path", "last", *FAST])
    runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 2
    ids = {read_offline_run(folder, wait=30)["id"] for folder in runs}
    assert ids == {(run_dir / "wandb-id").read_text().strip()}
    resumed = read_offline_run(runs[-1], wait=30)
    # the resumed W&B run goes on from the checkpoint: it trains the second epoch only
    assert [row["epoch"] for row in resumed["history"] if "train/loss_epoch" in row] == [1]


# -- the sweep --


@pytest.mark.slow
def test_sweep_calls_the_fit_with_arguments_it_accepts():
    sweep = yaml.safe_load((ROOT / "experiments" / "sweep.yaml").read_text())
    parameters = sweep["parameters"]
    assert set(parameters) == {"model.alpha", "model.beta", "model.dim", "model.dropout", "model.lr"}
    assert sweep["metric"] == {"name": layout.best_monitor_key(10), "goal": "maximize"}
    # what `wandb agent` runs: ${args} become --name=value (wandb_agent / sweeps utils)
    values = {"model.alpha": 0.3, "model.beta": 0.7, "model.dim": 32, "model.dropout": 0.2, "model.lr": 0.0005}
    for name, value in values.items():
        spec = parameters[name]
        assert value in spec["values"] if "values" in spec else spec["min"] <= value <= spec["max"]
    command = []
    for part in sweep["command"]:
        if part == "${env}":
            continue
        command += {"${interpreter}": [sys.executable], "${args}": [f"--{k}={v}" for k, v in values.items()]}.get(part, [part])
    assert command[1:3] == ["-m", "negseq.fit"]
    printed = subprocess.run([*command, "--print_config"], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    config = yaml.safe_load(printed)
    assert {f"model.{k}": v for k, v in config["model"].items() if f"model.{k}" in values} == values
    assert config["trainer"]["enable_progress_bar"] is False
    configs = [part for flag, part in zip(command, command[1:]) if flag == "--config"]
    assert configs == ["experiments/data/ml-latest-small.yaml", "experiments/models/pnfrec.yaml"] and all((ROOT / c).is_file() for c in configs)
