"""Shared fixtures: a small interaction log the tests write themselves, and W&B kept off by default."""

from __future__ import annotations

import subprocess

import numpy as np
import polars as pl
import pytest
import torch


def make_log(n_users: int = 40, n_items: int = 30, per_user: int = 12, seed: int = 0) -> pl.DataFrame:
    """A log in the generic format with string user ids: every user rates ``per_user`` distinct items, ratings 1..5."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(n_users):
        items = rng.choice(n_items, size=per_user, replace=False)
        ratings = rng.integers(1, 6, size=per_user)
        for step, (item, rating) in enumerate(zip(items, ratings)):
            rows.append((f"u{user}", int(item) + 100, float(rating), 1_000_000 + 1000 * user + step))
    return pl.DataFrame(rows, schema=["user_id", "item_id", "rating", "timestamp"], orient="row")


@pytest.fixture
def tiny_log(tmp_path) -> str:
    """Path of a small CSV log that survives the 5-core filters."""
    path = tmp_path / "log.csv"
    make_log().write_csv(path)
    return str(path)


@pytest.fixture(scope="session", autouse=True)
def _one_intra_op_thread():
    """The tests' models are tiny: a second intra-op thread only waits, and pytest-xdist already runs a worker per core.
    The fits the tests start in subprocesses get one thread too (OMP_NUM_THREADS), so that they compute as this one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _wandb_disabled(monkeypatch):
    """Tests run W&B disabled unless a test sets another mode (the offline default has its own test)."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("WANDB_SILENT", "true")


@pytest.fixture(autouse=True)
def _prepared_data_cache(monkeypatch, tmp_path_factory):
    """Prepared-data cache entries go to one directory per test session, not to the working directory's runs/."""
    monkeypatch.setenv("NEGSEQ_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "prepared-cache"))


class _FitsInProcess:
    """Stands in for ``subprocess`` in :mod:`negseq.studies.runner`: ``run_one``'s ``python -m negseq.fit ...`` command runs
    as ``negseq.fit.main`` in this process, its exit status as the subprocess's."""

    STDOUT = subprocess.STDOUT

    @staticmethod
    def run(command: list[str], stdout, stderr, env) -> subprocess.CompletedProcess:
        from negseq.errors import run_cli
        from negseq.fit import main as fit_main

        assert command[1:3] == ["-m", "negseq.fit"], command
        try:  # its output is the test's (sys.stdout is global: redirecting it would take the runner's own lines too)
            run_cli(fit_main, command[3:])
        except SystemExit as exit:  # a refusal, as the command's exit status
            return subprocess.CompletedProcess(command, exit.code or 0)
        return subprocess.CompletedProcess(command, 0)


@pytest.fixture
def fits_in_process(monkeypatch):
    """The runners' fits (negseq.studies.runner, negseq.studies.compare) in this process: the same command line without a Python
    start-up per run (seconds each). The subprocess itself is tested by the runners' failure tests."""
    monkeypatch.setattr("negseq.studies.runner.subprocess", _FitsInProcess)
