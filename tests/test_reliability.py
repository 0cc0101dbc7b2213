"""Reliability of whole runs: exact resume after a kill, same-seed determinism, multi-process evaluation
and training, the NaN stop, checkpoint loading, and a failed run leaving no metrics.json.

The kill and DDP tests run ``python -m negseq.fit`` / ``python -m negseq test`` in subprocesses;
``tests/crash_callback.py`` holds the test-only callbacks they add with ``--trainer.callbacks+=``.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import lightning as L
import polars as pl
import pytest
import torch
import yaml

from negseq.__main__ import main as subcommand_main
from negseq.data import FeedbackDataModule
from negseq.errors import ConfigError, run_cli
from negseq.fit import main as fit_main
from negseq.models import inference
from negseq.training.module import NegSeqModule


def rank(module, sequences, seen, targets, negatives=None):
    """The module's ranking of ``targets`` among its top ``k`` (ranks, top scores, top ids), as its eval steps rank."""
    batch = {"positives": sequences, "seen": seen, "target": targets, **({} if negatives is None else {"negatives": negatives})}
    ranked = inference.rank(module.model, batch, module.hparams.k, "positives", module.hparams.score_block_items)
    return ranked.ranks, ranked.scores, ranked.items

ROOT = Path(__file__).parents[1]
TESTS = Path(__file__).parent
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false", "--trainer.logger", "false"]
# 41 users: 20 drawn for validation, 21 for test (an odd test set); 3 training batches per epoch
DATA = ["--data.max_len", "10", "--data.batch_size", "16"]
MODEL = ["--model.dim", "16", "--model.lr", "0.01"]
EPOCHS = 6
CRASH_AFTER = 3  # the reference's best epoch is 1: last.ckpt (epoch 3) and best.ckpt differ when it is killed
RUN_FILES = {"config.yaml", "history.jsonl", "metrics.json", "recommendations.parquet", "checkpoints"}


def make_log(**kwargs) -> pl.DataFrame:
    """tests/conftest.py's ``make_log``, for module-wide fixtures (``tiny_log`` is per test)."""
    spec = importlib.util.spec_from_file_location("_negseq_tests_conftest", TESTS / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_log(**kwargs)


def python(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python *args`` with tests/ importable (for crash_callback) and W&B off."""
    env = {**os.environ, "WANDB_MODE": "disabled", "WANDB_SILENT": "true"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), str(ROOT), env.get("PYTHONPATH")]))
    env.pop("NEGSEQ_RUN_DIR", None)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)


def fit_args(log: Path, run_dir: Path, *extra: str) -> list[str]:
    return ["-m", "negseq.fit", "--data.path", str(log), "--run_dir", str(run_dir), "--trainer.max_epochs", str(EPOCHS), *DATA, *MODEL, *QUIET, *extra]


def run_files(run_dir: Path) -> dict:
    """What a run leaves, minus wall-clock times: metrics, history rows, recommendations, best weights."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics.pop("fit_seconds")
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    for row in history:
        row.pop("epoch_seconds")
    best = torch.load(run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    return {
        "metrics": metrics,
        "history": history,
        "recommendations": pl.read_parquet(run_dir / "recommendations.parquet").rows(),
        "best_weights": {name: tensor.tolist() for name, tensor in best["state_dict"].items()},
    }


def assert_complete(run_dir: Path) -> None:
    assert RUN_FILES <= {path.name for path in run_dir.iterdir()}
    assert {path.name for path in (run_dir / "checkpoints").iterdir()} == {"best.ckpt", "last.ckpt"}


def checkpoint_epoch(path: Path) -> int:
    """1-based epoch a checkpoint was written after."""
    return torch.load(path, map_location="cpu", weights_only=True)["epoch"] + 1


@pytest.fixture(scope="module")
def log(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("log") / "log.csv"
    make_log(n_users=41).write_csv(path)
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory, log) -> Path:
    """An uninterrupted fit in a subprocess, seed 42."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    result = python(*fit_args(log, run_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    assert_complete(run_dir)
    return run_dir


# -- determinism --


def test_same_seed_gives_identical_run_files(reference, log, tmp_path):
    """The reference ran in a subprocess; the same command again, in this process, writes the same files."""
    again = tmp_path / "again"
    fit_main(fit_args(log, again)[2:])
    assert_complete(again)
    assert run_files(again) == run_files(reference)


def test_ranks_break_exact_ties_by_item_id():
    """All scores equal: the target's rank is 1 + the recommendable items with a smaller id, on any device."""
    module = NegSeqModule(num_items=50, num_train_items=50, max_len=5, dim=8, dropout=0.0, k=20).eval()  # ranks above k stop counting
    with torch.no_grad():
        module.model.items.weight.zero_()
        sequences = torch.tensor([[0, 0, 0, 3, 4], [0, 0, 0, 0, 7]])
        seen = torch.tensor([[3, 4], [7, 0]])
        targets = torch.tensor([20, 2])
        ranks, _, _ = rank(module, sequences, seen, targets)
        assert ranks.tolist() == [18.0, 2.0]  # items 1..19 without the seen 3 and 4; item 1


def test_top_k_breaks_exact_ties_by_item_id():
    module = NegSeqModule(num_items=50, num_train_items=50, max_len=5, dim=8, dropout=0.0).eval()
    with torch.no_grad():
        module.model.items.weight.zero_()
        _, _, items = rank(module, torch.tensor([[0, 0, 0, 3, 4]]), torch.tensor([[3, 4]]), torch.tensor([20]))
    assert items.tolist() == [[1, 2, 5, 6, 7, 8, 9, 10, 11, 12]]


# -- resume --


@pytest.mark.slow
def test_killed_fit_resumed_from_its_config_matches_the_uninterrupted_one(reference, log, tmp_path):
    """Killed (os._exit) at the start of epoch 4, then `python -m negseq.fit --config DIR/config.yaml --ckpt_path last`."""
    run_dir = tmp_path / "run"
    marker = tmp_path / "crashed-once"
    crash = ["--trainer.callbacks+=crash_callback.CrashAfterEpoch", "--trainer.callbacks.epoch", str(CRASH_AFTER), "--trainer.callbacks.once", str(marker)]
    killed = python(*fit_args(log, run_dir, *crash))
    assert killed.returncode == 17, killed.stderr[-3000:]
    assert not (run_dir / "metrics.json").exists() and not (run_dir / "recommendations.parquet").exists()
    assert len((run_dir / "history.jsonl").read_text().splitlines()) == CRASH_AFTER
    # last.ckpt is the end of epoch 3 even though the best epoch was earlier (Lightning 2.6 alone would leave it at the best)
    assert checkpoint_epoch(run_dir / "checkpoints" / "last.ckpt") == CRASH_AFTER
    assert checkpoint_epoch(run_dir / "checkpoints" / "best.ckpt") < CRASH_AFTER

    resumed = python("-m", "negseq.fit", "--config", str(run_dir / "config.yaml"), "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.strip().splitlines()[-1] == str(run_dir)
    assert_complete(run_dir)
    assert run_files(run_dir) == run_files(reference)
    assert [row["epoch"] for row in run_files(run_dir)["history"]] == list(range(1, EPOCHS + 1))


@pytest.mark.slow
def test_fit_killed_mid_epoch_resumed_with_run_dir_matches_the_uninterrupted_one(reference, log, tmp_path):
    """Killed after the first batch of epoch 5, then the same command with `--ckpt_path last` (same --run_dir)."""
    run_dir = tmp_path / "run"
    crash = ["--trainer.callbacks+=crash_callback.CrashAfterEpoch", "--trainer.callbacks.epoch", "4", "--trainer.callbacks.at", "mid_epoch"]
    killed = python(*fit_args(log, run_dir, *crash))
    assert killed.returncode == 17, killed.stderr[-3000:]
    assert not (run_dir / "metrics.json").exists()
    resumed = python(*fit_args(log, run_dir, "--ckpt_path", "last"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_complete(run_dir)
    assert run_files(run_dir) == run_files(reference)


# -- several processes --


@pytest.mark.slow
def test_two_process_test_counts_every_user_once(reference, tmp_path):
    """`python -m negseq test` of the best checkpoint on 2 CPU processes (gloo) = the 1-process test of the fit."""
    expected = json.loads((reference / "metrics.json").read_text())
    assert (expected["test/n_users_pos"] + expected["test/n_users_neg"]) % 2 == 1  # odd: a padded sampler would repeat one
    config_before = (reference / "config.yaml").read_text()
    out = tmp_path / "ddp"
    result = python(
        "-m", "negseq", "test", "--config", str(reference / "config.yaml"), "--ckpt_path", str(reference / "checkpoints" / "best.ckpt"),
        "--run_dir", str(out), "--data.eval_batch_size", "4",  # several batches per process, 11 users on one and 10 on the other
        "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
        "--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir", str(out),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (metrics_csv,) = out.rglob("metrics.csv")
    (row,) = list(csv.DictReader(metrics_csv.open()))
    logged = {key: float(value) for key, value in row.items() if key.startswith("test/")}
    # float32 metric states: two processes sum in another order than one, so the means agree to float32 rounding
    assert logged == pytest.approx({key: float(value) for key, value in expected.items() if key.startswith("test/")}, rel=1e-6)
    assert {key: logged[key] for key in ("test/n_users_pos", "test/n_users_neg")} == {key: expected[key] for key in ("test/n_users_pos", "test/n_users_neg")}
    assert (reference / "config.yaml").read_text() == config_before


@pytest.mark.slow
def test_two_process_fit_writes_one_complete_run(log, tmp_path):
    root = tmp_path / "runs"
    result = python(
        "-m", "negseq.fit", "--data.path", str(log), "--trainer.default_root_dir", str(root), "--trainer.max_epochs", "2", *DATA, *MODEL, *QUIET,
        "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = root.iterdir()  # the second process joins the first one's directory
    assert result.stdout.strip().splitlines()[-1] == str(run_dir)
    assert result.stdout.count("best_epoch") == 1  # the final table, printed by one process
    assert_complete(run_dir)
    files = run_files(run_dir)
    assert [row["epoch"] for row in files["history"]] == [1, 2]
    assert all(row["val/n_users_pos"] + row["val/n_users_neg"] == 8 for row in files["history"])  # all validation users, both processes
    metrics = files["metrics"]
    assert metrics["test/n_users_pos"] + metrics["test/n_users_neg"] == 21
    recommendations = pl.read_parquet(run_dir / "recommendations.parquet")
    users = recommendations["user_id"].unique(maintain_order=True)
    assert users.len() == 21 and recommendations.height == 21 * 10
    data = FeedbackDataModule(path=str(log), max_len=10)
    assert users.to_list() == data.decode(data.test_sequences.user.tolist(), [1] * 21)["user_id"].to_list()  # user order

    # the gathered metrics and recommendations are those of the best checkpoint tested on one process
    model = NegSeqModule.load_from_checkpoint(run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False)
    (one_process,) = trainer.test(model, datamodule=data, verbose=False)
    assert {key: float(value) for key, value in one_process.items()} == pytest.approx(
        {key: float(value) for key, value in metrics.items() if key.startswith("test/")}, rel=1e-6
    )  # float32 states: the two processes' sums are added in another order
    predictions = trainer.predict(model, datamodule=data)
    top = data.decode(torch.cat([batch["user"] for batch in predictions]).repeat_interleave(10).tolist(), torch.cat([b["items"] for b in predictions]).flatten().tolist())
    assert recommendations.select("user_id", "item_id").rows() == top.rows()


# -- NaN --


@pytest.mark.slow
def test_nan_loss_stops_the_run_naming_the_step(log, tmp_path):
    run_dir = tmp_path / "run"
    poison = ["--trainer.callbacks+=crash_callback.PoisonLoss", "--trainer.callbacks.epoch", "2", "--trainer.callbacks.batch", "1"]
    result = python(*fit_args(log, run_dir, *poison))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    # 3 batches per epoch: batch 1 of epoch 2 is global step 4
    assert last_line.startswith("error: non-finite training loss at epoch 2, step 4 (batch 1): loss_pos=nan"), last_line
    assert not (run_dir / "metrics.json").exists() and not (run_dir / "recommendations.parquet").exists()
    assert [json.loads(line)["epoch"] for line in (run_dir / "history.jsonl").read_text().splitlines()] == [1]


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(alpha=0.45, beta=0.25),  # PNFRec
        dict(alpha=0.45, beta=0.0),  # CE+CE
        dict(alpha=0.0, beta=0.25),  # CE+contrast
        dict(family="whole_history", alpha=0.0, beta=0.0),  # SASRec
        dict(family="whole_history", alpha=0.0, beta=0.25, cosine=True, temperature=0.1),  # SASRec_c
        dict(family="whole_history", alpha=0.0, beta=0.0, unlikelihood_weight=0.5),  # unlikelihood
    ],
)
def test_degenerate_batches_give_finite_losses_gradients_and_ranks(kwargs):
    torch.manual_seed(0)
    module = NegSeqModule(num_items=12, num_train_items=12, max_len=5, **{"dim": 8, "dropout": 0.1, **kwargs})
    zeros = torch.zeros(4, 6, dtype=torch.long)
    rows = {
        # a user with one positive and nothing else; a user without negatives; an all-padding row; a user with only negatives
        "positives": torch.tensor([[0, 0, 0, 0, 0, 3], [0, 0, 1, 2, 3, 4], [0] * 6, [0] * 6]),
        "negatives": torch.tensor([[0] * 6, [0] * 6, [0] * 6, [0, 0, 0, 5, 6, 7]]),
        "history": torch.tensor([[0, 0, 0, 0, 0, 3], [0, 0, 1, 2, 3, 4], [0] * 6, [0, 0, 0, 5, 6, 7]]),
        "history_positive": torch.tensor([[False] * 5 + [True], [False, False, True, True, True, True], [False] * 6, [False] * 6]),
    }
    no_negatives = {**rows, "negatives": zeros, "history_positive": rows["history"] > 0}
    nothing = {name: torch.zeros_like(value) for name, value in rows.items()}  # a batch of padding only
    for batch in (rows, no_negatives, nothing):
        module.zero_grad()
        terms = module.loss_terms(batch)
        assert all(torch.isfinite(value) for value in terms.values()), terms
        terms["loss"].backward()
        assert all(torch.isfinite(p.grad).all() for p in module.parameters() if p.grad is not None)
    module.eval()
    with torch.no_grad():
        inputs = torch.tensor([[0] * 5, [0, 0, 0, 0, 3], [1, 2, 3, 4, 5]])
        ranks, scores, _ = rank(module, inputs, torch.tensor([[0], [3], [5]]), torch.tensor([1, 3, 6]))
    assert ranks[0] >= 1 and torch.isfinite(ranks[0]) and ranks[1] == float("inf") and torch.isfinite(ranks[2])  # item 3 was seen: a miss
    assert torch.isfinite(scores).all()


# -- checkpoints --


def test_checkpoints_load_with_weights_only_and_refuse_another_catalogue(reference, tmp_path, capsys):
    for name in ("best.ckpt", "last.ckpt"):
        checkpoint = torch.load(reference / "checkpoints" / name, map_location="cpu", weights_only=True)
        assert set(checkpoint["rng_states"]) >= {"torch", "numpy", "python"}  # + "cuda" after a GPU fit
    best = reference / "checkpoints" / "best.ckpt"
    model = NegSeqModule.load_from_checkpoint(best, map_location="cpu", weights_only=True)  # without a trainer
    assert model.hparams.num_items == 30
    with pytest.raises(ConfigError, match=r"checkpoint was trained with num_items=30 but this run has num_items=31"):
        NegSeqModule.load_from_checkpoint(best, map_location="cpu", weights_only=True, num_items=31)

    other = tmp_path / "other.csv"
    make_log(n_users=41, n_items=25).write_csv(other)  # 25 items instead of 30
    with pytest.raises(SystemExit) as stopped:
        run_cli(subcommand_main, ["test", "--config", str(reference / "config.yaml"), "--data.path", str(other), "--ckpt_path", str(best), "--run_dir", str(tmp_path / "t")])
    assert stopped.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error[-1] == (
        "error: checkpoint was trained with num_items=30 but this run has num_items=25: "
        "use the same data, filters and model settings as the run that wrote it"
    )
    with pytest.raises(ConfigError, match="num_items=30 but this run has num_items=25"):  # resuming a fit on other data
        fit_main(["--data.path", str(other), "--run_dir", str(tmp_path / "f"), "--ckpt_path", str(reference / "checkpoints" / "last.ckpt"), *DATA, *MODEL, *QUIET])
    assert not (tmp_path / "f" / "metrics.json").exists()


def test_an_architecture_flag_the_checkpoint_contradicts_is_one_clean_line(reference, tmp_path, capsys):
    """Lightning builds the model of `test --ckpt_path` from the checkpoint's hyper-parameters: `--model.heads 2` (fitted
    with 1) was dropped without a word; the same value as the checkpoint's, or another loss weight, is no contradiction."""
    best = reference / "checkpoints" / "best.ckpt"
    command = ["test", "--config", str(reference / "config.yaml"), "--ckpt_path", str(best), *QUIET]
    with pytest.raises(SystemExit) as stopped:
        run_cli(subcommand_main, [*command, "--run_dir", str(tmp_path / "t"), "--model.heads", "2", "--model.blocks=3", "--model.alpha", "0.3"])
    assert stopped.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: --ckpt_path {best} was trained with blocks=2, heads=1 but the command line has --model.blocks 3 --model.heads 2: "
        "the checkpoint's network is loaded, so drop such flags (or fit a new model)"
    )
    assert not (tmp_path / "t").exists()
    run_cli(subcommand_main, [*command, "--run_dir", str(tmp_path / "same"), "--model.heads", "1", "--model.alpha", "0.3"])


# -- nothing lost --


def test_testing_a_run_from_its_config_keeps_the_config_it_resumes_from(reference, tmp_path):
    """`python -m negseq test --config runs/<run>/config.yaml` (the README's command) writes config-test.yaml, not config.yaml."""
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["run_dir"] = str(run_dir)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    before = (run_dir / "config.yaml").read_text()
    subcommand_main(["test", "--config", str(run_dir / "config.yaml"), "--ckpt_path", str(run_dir / "checkpoints" / "best.ckpt")])
    assert (run_dir / "config.yaml").read_text() == before
    assert yaml.safe_load((run_dir / "config-test.yaml").read_text())["ckpt_path"] == str(run_dir / "checkpoints" / "best.ckpt")
    assert not (run_dir / "lightning_logs").exists()
