"""A run written by negseq 0.1.0 (commit ecdb1d0, before the model families and the ranking weights of 0.2.0), kept in
tests/fixtures/run-0.1.0/ (60 sampled users of ml-latest-small, dim 16, 2 epochs): today's code tests its checkpoint to
the metrics that run wrote, and serves the lists it wrote."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import polars as pl
import pytest
import yaml

from negseq import Recommender
from negseq.data import FeedbackDataModule
from negseq.data.datamodule import embedded_ratings
from negseq.errors import ConfigError
from negseq.training import checkpoints
from negseq.training.cli import NegSeqCLI
from negseq.training.module import NegSeqModule
from tests.test_serving import movielens_events, without_last_event

RUN = Path(__file__).parent / "fixtures" / "run-0.1.0"


def relocated(tmp_path: Path) -> Path:
    """A copy of the old run whose config names its own directory (the config holds the paths it was written in)."""
    run_dir = tmp_path / "run"
    shutil.copytree(RUN, run_dir)
    text = (run_dir / "config.yaml").read_text().replace("/tmp/legacy_run", str(run_dir))
    (run_dir / "config.yaml").write_text(text)
    return run_dir


@pytest.mark.filterwarnings("ignore:LightningCLI.s args parameter")
def test_the_old_checkpoint_tests_to_the_metrics_its_run_wrote(tmp_path):
    run_dir = relocated(tmp_path)
    cli = NegSeqCLI(args=["test", "--config", str(run_dir / "config.yaml"), "--ckpt_path", str(run_dir / "checkpoints" / "best.ckpt"),
                          "--trainer.enable_progress_bar", "false"])
    measured = {key: float(value) for key, value in cli.trainer.callback_metrics.items()}
    written = json.loads((RUN / "metrics.json").read_text())
    compared = [key for key in written if key.startswith("test/")]
    assert len(compared) == 13
    for key in compared:
        expected = math.nan if written[key] is None else written[key]
        assert measured[key] == pytest.approx(expected, abs=1e-6, nan_ok=True), key


def test_the_old_run_serves_the_lists_it_wrote(tmp_path):
    recommender = Recommender.load(RUN)
    assert recommender.family == "sign_separated" and float(recommender.model.polarity_prior) == 0.0  # 0.1.0 had no prior: 0
    with pytest.warns(DeprecationWarning, match="Recommender.history is deprecated since 0.4.0: use Recommender.family"):
        assert recommender.history == "sign_separated"  # its 0.1.0 checkpoint says history=positives
    with pytest.warns(DeprecationWarning, match=r"Recommender\(history=...\) is deprecated since 0.4.0: use family=..."):
        assert Recommender(recommender.model, recommender.catalog, history="positives").family == "sign_separated"
    written = pl.read_parquet(RUN / "recommendations.parquet")
    users = written["user_id"].unique().sort().head(20).to_list()
    config = yaml.safe_load((RUN / "config.yaml").read_text())["data"]
    items = FeedbackDataModule(sample_users=config["sample_users"]).split.item_ids
    histories = tmp_path / "histories.parquet"
    without_last_event(movielens_events(embedded_ratings()), users, items).write_parquet(histories)
    served = recommender.recommend_log(histories, k=10)
    expected = written.filter(pl.col("user_id").is_in(users)).sort("user_id", "rank")
    assert served.select("user_id", "item_id", "rank").equals(expected.select("user_id", "item_id", "rank"))


def test_the_old_checkpoint_names_its_family_when_loaded_into_another():
    """Its ``history: positives`` is read as family sign_separated, so loading it into a model of another family that
    builds the same network (alpha 0 on both sides) is refused by name, as a checkpoint of today's is."""
    checkpoint = checkpoints.read(RUN)
    checkpoint["hyper_parameters"]["alpha"] = 0.0
    hp = checkpoints.hyper_parameters(checkpoints.read(RUN))
    other = NegSeqModule(**{**hp, "family": "whole_history", "alpha": 0.0, "beta": 0.0})
    with pytest.raises(ConfigError, match="checkpoint was trained with family=sign_separated but this run has family=whole_history"):
        other.on_load_checkpoint(checkpoint)
