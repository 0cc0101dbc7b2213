"""One inference path: the fit's test, Recommender.recommend / recommend_log, `negseq recommend` and the exported program
(with export.json's post-processing) give the same top-k for every test user, for each model family.

Each model is fitted once (module scope) through ``Recommender.fit`` on a quarter of the users of the embedded
ml-latest-small, 1 epoch: PNFRec, SASRec (history all), pnfrec_plus (dislike demotion and the item-polarity prior), PNFRec with gated fusion and
Signed SASRec (history signed) ranked with its sign head.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from negseq import Recommender
from negseq.__main__ import main as negseq_main
from negseq.data import FeedbackDataModule
from negseq.errors import run_cli
from negseq.models import inference
from negseq.training.module import NegSeqModule

ROOT = Path(__file__).parents[1]
SAMPLE = {"data.sample_users": 0.25, "model.dim": 16, "trainer.max_epochs": 1, "trainer.enable_progress_bar": False,
          "trainer.enable_model_summary": False, "trainer.logger": False}
MODELS = {
    "pnfrec": ([], {}),
    "sasrec": ([ROOT / "experiments" / "models" / "sasrec.yaml"], {}),
    # one demotion and one prior candidate, so that the test ranks with both (the overlay's own list may choose 0)
    "pnfrec_plus": (
        [ROOT / "experiments" / "models" / "pnfrec.yaml", ROOT / "experiments" / "beyond" / "pnfrec_plus.yaml"],
        {"select_dislike_demotion": [1.5], "select_polarity_prior": [2.0]},
    ),
    "fusion": ([], {"model.fusion": "gated"}),
    # with its sign head in the ranking (one candidate, so that the test ranks with it)
    "signed": ([ROOT / "experiments" / "models" / "signed_sign.yaml"], {"select_sign_scoring": [1.5]}),
}
K = 10


@pytest.fixture(scope="module")
def test_histories() -> tuple[list[int], list[list[tuple[int, bool]]]]:
    """Each test user's id and its model input's events ``(item, liked)`` in event order (original ids)."""
    data = FeedbackDataModule(sample_users=SAMPLE["data.sample_users"])
    events = data.split.test.filter(~pl.col("is_target"))
    decoded = data.decode(events["user"].to_list(), events["item"].to_list()).with_columns(liked=events["positive"])
    grouped = decoded.group_by("user_id", maintain_order=True).agg("item_id", "liked").sort("user_id")
    return grouped["user_id"].to_list(), [list(zip(items, signs)) for items, signs in zip(grouped["item_id"], grouped["liked"])]


@pytest.fixture(scope="module", params=list(MODELS))
def fitted(request, tmp_path_factory) -> tuple[str, Recommender]:
    configs, overrides = MODELS[request.param]
    run_dir = tmp_path_factory.mktemp(request.param) / "run"
    from negseq.data.datamodule import embedded_ratings

    return request.param, Recommender.fit(embedded_ratings(), config=configs, run_dir=run_dir, overrides={**SAMPLE, **overrides})


def as_log(users: list[int], histories: list[list[tuple[int, bool]]]) -> pl.DataFrame:
    """The histories as a MovieLens log: liked 5 stars, disliked 1 (threshold 4), time = position (event order kept)."""
    rows = [(user, item, 5.0 if liked else 1.0, t) for user, history in zip(users, histories) for t, (item, liked) in enumerate(history)]
    return pl.DataFrame(rows, schema=["userId", "movieId", "rating", "timestamp"], orient="row")


def exported_top_k(out: Path, histories: list[list[tuple[int, bool]]], k: int) -> list[list[int]]:
    """Top-k item ids of the exported program with export.json's post-processing, written from the contract alone."""
    manifest = json.loads((out / "export.json").read_text())
    program = torch.export.load(out / "user_encoder.pt2").module()
    items = torch.from_numpy(np.load(out / "items.npy")).double()  # (N, D): row r is code r + 1
    vocabulary = pl.read_parquet(out / "items.parquet")
    code_of = dict(zip(vocabulary["item_id"].to_list(), vocabulary["code"].to_list()))
    length = manifest["max_len"]

    def padded(codes: list[int]) -> list[int]:
        return [0] * (length - len(codes[-length:])) + codes[-length:]

    inputs, negatives, seen = [], [], []
    for history in histories:
        known = [(code_of[item], liked) for item, liked in history if item in code_of]
        read = {"positives": [c for c, liked in known if liked], "history": [c for c, _ in known],
                "history with disliked codes negated": [c if liked else -c for c, liked in known]}[manifest["inputs"][0]]
        inputs.append(padded(read))
        negatives.append(padded([c for c, liked in known if not liked]))
        seen.append({c for c, _ in known})
    users, demote = program(torch.tensor(inputs), torch.tensor(negatives))  # (B, D), (B, R, D)
    unit = items / items.norm(dim=1, keepdim=True)
    prior = torch.tensor(vocabulary["prior"].to_list()).double()  # (N,)
    scores = users.double() @ items.T - (demote.double() @ unit.T).amax(dim=1).clamp(min=0) + prior  # (B, N), fp64
    scores = scores.float()
    popularity = torch.tensor(vocabulary["popularity"].to_list())
    tops = []
    for row in range(len(histories)):
        row_scores = popularity.clone() if inputs[row][-1] == 0 else scores[row]
        row_scores[[c - 1 for c in seen[row]]] = float("-inf")
        order = sorted(range(len(row_scores)), key=lambda j: (-float(row_scores[j]), j))[:k]  # score, then the smaller code
        tops.append(vocabulary["item_id"].gather(order).to_list())
    return tops


@pytest.mark.slow
def test_the_five_paths_give_the_same_top_k_for_every_test_user(fitted, test_histories, tmp_path, capsys):
    name, rec = fitted
    users, histories = test_histories
    fit = pl.read_parquet(rec.run_dir / "recommendations.parquet").sort("user_id", "rank")
    expected = fit.group_by("user_id", maintain_order=True).agg("item_id")
    assert expected["user_id"].to_list() == users
    expected = expected["item_id"].to_list()
    one_by_one = [rec.recommend(history=history, k=K)["item_id"].to_list() for history in histories]
    assert one_by_one == expected, name
    log = as_log(users, histories)
    served = rec.recommend_log(log, k=K).group_by("user_id", maintain_order=True).agg("item_id")
    assert served["user_id"].to_list() == users and served["item_id"].to_list() == expected, name
    log.write_csv(tmp_path / "ratings.csv")
    run_cli(negseq_main, ["recommend", "--run", str(rec.run_dir), "--data.path", str(tmp_path / "ratings.csv"), "--data.format", "movielens",
                          "--k", str(K), "--out", str(tmp_path / "recs.parquet")])
    command = pl.read_parquet(tmp_path / "recs.parquet").group_by("user_id", maintain_order=True).agg("item_id")
    assert command["item_id"].to_list() == expected, name
    run_cli(negseq_main, ["export", "--run", str(rec.run_dir), "--out", str(tmp_path / "export")])
    assert exported_top_k(tmp_path / "export", histories, K) == expected, name
    manifest = json.loads((tmp_path / "export" / "export.json").read_text())
    assert manifest["dislike_demotion"] == (1.5 if name == "pnfrec_plus" else 0.0)
    assert manifest["demotion_decay"] == (0.3 if name == "pnfrec_plus" else 1.0)
    assert manifest["polarity_prior"] == (2.0 if name == "pnfrec_plus" else 0.0)
    assert manifest["sign_scoring"] == (1.5 if name == "signed" else 0.0)


@pytest.mark.parametrize("family", ["sign_separated", "whole_history"])
def test_evaluation_gives_a_user_with_an_empty_input_the_fallback_serving_gives(family):
    """#24 defect 5: the test ranked such users with the model (the final LayerNorm's bias: one list for all of them)
    while serving gave them popularity. Now the one inference path decides, from what the model reads."""
    torch.manual_seed(0)
    module = NegSeqModule(num_items=12, num_train_items=12, max_len=4, dim=8, k=3, **({} if family == "sign_separated" else {"family": "whole_history", "alpha": 0.0, "beta": 0.0})).eval()
    module.popularity = torch.tensor([0.0, 1, 9, 3, 7, 0, 0, 0, 0, 0, 0, 5, 2])  # (N + 1,): items 2, 4, 11, 3, ...
    batch = {
        "user": torch.tensor([0, 1]),
        "positives": torch.tensor([[0, 0, 0, 0], [0, 0, 5, 6]]),  # user 0 liked nothing
        "negatives": torch.tensor([[0, 0, 7, 8], [0, 0, 0, 0]]),
        "history": torch.tensor([[0, 0, 0, 0], [0, 0, 5, 6]]),  # and, for a whole-history model, has no event at all
        "seen": torch.tensor([[4, 0], [5, 6]]),
        "target": torch.tensor([2, 9]),
        "target_positive": torch.tensor([True, True]),
    }
    with torch.no_grad():
        out = module.predict_step(batch, 0)
    assert out["items"][0].tolist() == [2, 11, 3]  # popularity, seen item 4 excluded: as Recommender serves it
    assert out["rank"][0] == 1.0
    model = inference.rank(module.model, batch, 3, family, popularity=None)  # no popularity: the model's own list
    assert out["items"][1].tolist() == model.items[1].tolist() and model.items[0].tolist() != [2, 11, 3]
