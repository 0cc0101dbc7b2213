"""A signed-history model end to end: fit and test on ml-latest-small, metrics.json with responsiveness, and serving
that reacts to a dislike in the history (issue 23: "a dislike added to a signed history changes its ranking")."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
import yaml

from negseq import Recommender
from negseq.data import FeedbackDataModule
from negseq.data.datamodule import embedded_ratings
from negseq.fit import main as fit_main
from tests.test_serving import (
    REPO,
    encoded_inputs,
    movielens_events,
    run_command,
    without_last_event,
)

pytestmark = pytest.mark.slow
K = 10
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
# every loss option of the family at once, so that one fit exercises each term through the CLI; and weight decay
OPTIONS = ["--model.unlikelihood_weight", "1.0", "--model.beta", "0.25", "--model.sign_weight", "0.5", "--model.weight_decay", "0.01"]


@pytest.fixture(scope="module")
def signed_run(tmp_path_factory) -> tuple[Path, dict]:
    """(run directory, metrics) of experiments/models/signed.yaml on the embedded ml-latest-small, one epoch, dim 16."""
    run_dir = tmp_path_factory.mktemp("signed") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WANDB_MODE", "disabled")
        metrics = fit_main([
            "--config", str(REPO / "experiments/models/signed.yaml"), "--run_dir", str(run_dir), "--model.dim", "16",
            "--trainer.max_epochs", "1", "--trainer.min_epochs", "1", *OPTIONS, *QUIET,
        ])
    return run_dir, metrics


def test_a_signed_model_fits_tests_and_reports_responsiveness(signed_run):
    run_dir, metrics = signed_run
    assert json.loads((run_dir / "metrics.json").read_text()) == metrics
    for key in ("test/hr_p@10", "test/ndcg_p@10", "test/hr_n@10", "test/list_change@10", "test/neighbour_suppression@10"):
        assert np.isfinite(metrics[key]), key
    # a fresh dislike enters the signed input: the rest of the list moves (PNFRec, which reads no dislike, gives exactly 0)
    assert 0 < metrics["test/list_change@10"] <= 1
    assert metrics["test/n_users_pos"] > 0 and metrics["test/n_users_neg"] > 0
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert {"train/loss", "train/loss_next", "train/loss_contrast", "train/loss_sign"} <= set(history[0])
    assert "train/loss_pos" not in history[0] and "train/loss_neg" not in history[0]
    model = yaml.safe_load((run_dir / "config.yaml").read_text())["model"]
    assert (model["family"], model["alpha"], model["sign_weight"], model["weight_decay"]) == ("signed", 0.0, 0.5, 0.01)
    state = torch.load(run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    assert state["model.signs.weight"].shape == (2, 16) and "model.sign_head.weight" in state
    assert not any(key.startswith("model.negative_encoder") for key in state)


def test_a_dislike_added_to_a_signed_history_changes_its_ranking(signed_run):
    rec = Recommender.load(signed_run[0])
    assert rec.family == "signed"
    history = [(1, True), (50, True), (110, False), (260, True), (296, True)]  # Toy Story, ..., Pulp Fiction
    wide = 50
    before = rec.recommend(history=history, k=wide)
    disliked_item = before["item_id"][0]
    after_dislike = rec.recommend(history=[*history, (disliked_item, False)], k=wide)
    after_like = rec.recommend(history=[*history, (disliked_item, True)], k=wide)
    assert disliked_item not in after_dislike["item_id"].to_list() and disliked_item not in after_like["item_id"].to_list()  # seen
    # the dislike changes the user's state, not only the disliked item's place: the rest of the list is reordered and rescored
    rest = before.filter(pl.col("item_id") != disliked_item)
    assert after_dislike["item_id"].to_list()[: wide - 1] != rest["item_id"].to_list()
    common = rest.join(after_dislike, on="item_id", suffix="_after")
    assert common.height > 10 and not np.allclose(common["score"].to_numpy(), common["score_after"].to_numpy(), atol=1e-4)
    # and a dislike is not a like of the same item
    assert after_dislike["item_id"].to_list() != after_like["item_id"].to_list()
    assert not np.allclose(after_dislike["score"].to_numpy(), after_like["score"].to_numpy())
    # an older event's sign matters as well
    flipped = rec.recommend(history=[(1, True), (50, True), (110, True), (260, True), (296, True)], k=wide)
    assert not np.allclose(flipped["score"].to_numpy(), before["score"].to_numpy())
    # liked/disliked lists are the history with the dislikes first
    assert rec.recommend(liked=[1, 50], disliked=[110], k=K).equals(rec.recommend(history=[(110, False), (1, True), (50, True)], k=K))


def test_served_lists_are_the_fits_recommendations(signed_run, tmp_path):
    run_dir, _ = signed_run
    fit_recommendations = pl.read_parquet(run_dir / "recommendations.parquet")
    users = fit_recommendations["user_id"].unique().sort().head(25).to_list()
    histories = without_last_event(movielens_events(embedded_ratings()), users, FeedbackDataModule().split.item_ids)
    served = Recommender.load(run_dir).recommend_log(histories.rename({"user_id": "userId", "item_id": "movieId"}), k=K)  # the log's columns
    expected = fit_recommendations.filter(pl.col("user_id").is_in(users)).sort("user_id", "rank")
    # the serving batch reads the signed history exactly as evaluation did
    assert served.select("user_id", "item_id", "rank").equals(expected.select("user_id", "item_id", "rank"))
    assert np.allclose(served["score"].to_numpy(), expected["score"].to_numpy(), atol=1e-5)


def test_negseq_recommend_and_export_of_a_signed_run(signed_run, tmp_path, capsys):
    run_dir, _ = signed_run
    out = tmp_path / "recs.parquet"
    code, _ = run_command(["recommend", "--run", str(run_dir), "--data.path", str(embedded_ratings()), "--data.format", "movielens",
                           "--k", "5", "--out", str(out)], capsys)
    assert code == 0 and pl.read_parquet(out)["user_id"].n_unique() == 610
    assert run_command(["export", "--run", str(run_dir), "--out", str(tmp_path / "export")], capsys)[0] == 0
    manifest = json.loads((tmp_path / "export" / "export.json").read_text())
    assert manifest["family"] == "signed" and manifest["inputs"] == ["history with disliked codes negated", "negatives"]
    program = torch.export.load(tmp_path / "export" / "user_encoder.pt2").module()
    items = torch.from_numpy(np.load(tmp_path / "export" / "items.npy"))  # (N, D)
    vocabulary = pl.read_parquet(tmp_path / "export" / "items.parquet")
    rec = Recommender.load(run_dir)
    liked, disliked = [1, 50, 260], [110]
    positives, negatives, seen = encoded_inputs(rec, liked, disliked)
    # the program reads signed codes: the history with the dislikes first (as recommend(liked=, disliked=) orders them), -code if disliked
    codes = [-int(c) for c in negatives[0] if c] + [int(c) for c in positives[0] if c]
    signed = torch.tensor([[0] * (rec.catalog.max_len - len(codes)) + codes])
    users, _ = program(signed, negatives)  # (1, D) user vectors and (1, R, D) demotion vectors (zeros: no demotion)
    scores = users[0] @ items.T  # (N,): column c is code c + 1
    scores[[code - 1 for code in seen if code]] = float("-inf")
    top = vocabulary["item_id"].gather(scores.topk(K).indices.numpy()).to_list()
    assert top == rec.recommend(liked=liked, disliked=disliked, k=K)["item_id"].to_list()
