"""The Python API over the CLI: Recommender.fit / from_module, recommend_many, score, similar_items, allowed and blocked
items, on_unknown_user, and one-line errors for bad input. Two tiny fits from a polars frame with string ids (PNFRec
and a whole-history SASRec) are shared by the module."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from negseq import Recommender
from negseq.__main__ import main as negseq_main
from negseq.data import FeedbackDataModule, read_events
from negseq.errors import ConfigError, DataError, run_cli
from negseq.models import inference
from negseq.training.module import NegSeqModule
from tests.conftest import make_log

QUIET = {"trainer.enable_progress_bar": False, "trainer.enable_model_summary": False, "trainer.logger": False}
TINY = {"model.dim": 8, "data.max_len": 10, "trainer.max_epochs": 1, **QUIET}


def string_log() -> pl.DataFrame:
    return make_log().with_columns(item_id="i" + pl.col("item_id").cast(pl.String))


@pytest.fixture(scope="module")
def pnfrec(tmp_path_factory) -> Recommender:
    return Recommender.fit(string_log(), run_dir=tmp_path_factory.mktemp("pnfrec") / "run", overrides=TINY)


@pytest.fixture(scope="module")
def sasrec(tmp_path_factory) -> Recommender:
    overrides = {**TINY, "model.family": "whole_history", "model.alpha": 0.0, "model.beta": 0.0}
    return Recommender.fit(string_log(), run_dir=tmp_path_factory.mktemp("sasrec") / "run", overrides=overrides)


HISTORY = [("i101", True), ("i105", False), ("i110", True), ("i103", False)]


# -- fitting from Python --


def test_fit_from_a_frame_with_string_ids_serves_without_the_log(pnfrec, tmp_path):
    run_dir = pnfrec.run_dir
    assert {"metrics.json", "recommendations.parquet", "log.parquet"} <= {path.name for path in run_dir.iterdir()}
    assert pnfrec.catalog.item_ids.dtype == pl.String and pnfrec.model.items.embedding_dim == 8
    mine = pnfrec.recommend(history=HISTORY, k=5)
    assert mine.schema["item_id"] == pl.String and mine.height == 5 and not set(mine["item_id"]) & {"i101", "i105", "i110", "i103"}
    moved = (run_dir / "log.parquet").rename(tmp_path / "elsewhere.parquet")  # the checkpoint alone serves
    try:
        assert Recommender.load(run_dir).recommend(history=HISTORY, k=5).equals(mine)
    finally:
        moved.rename(run_dir / "log.parquet")
    served = pnfrec.recommend_log(string_log(), k=5)
    assert served.schema["user_id"] == pl.String and served["user_id"].n_unique() == 40


def test_fit_composes_configs_and_overrides_and_writes_to_a_temporary_directory_by_default(tmp_path):
    config = tmp_path / "small.yaml"
    config.write_text("model:\n  dim: 12\n  alpha: 0.0\n  beta: 0.0\n")
    rec = Recommender.fit(string_log(), config=config, overrides={**TINY, "model.dim": 4})  # overrides come after the configs
    assert rec.model.items.embedding_dim == 4 and rec.model.negative_encoder is None and (rec.run_dir / "checkpoints" / "best.ckpt").is_file()
    with pytest.raises(ConfigError, match="Recommender.fit: the configuration was refused"):
        Recommender.fit(string_log(), run_dir=tmp_path / "bad", overrides={**TINY, "model.no_such_option": 1})
    with pytest.raises(DataError, match="log must be a file path or a polars or pandas frame, got dict"):
        Recommender.fit({"user_id": [1]})


def test_a_pandas_frame_is_read_fitted_and_served_as_the_same_polars_frame(pnfrec, tmp_path):
    """RecTools' and RePlay's users hold their logs in pandas: each entry point that takes a polars frame converts one
    (negseq.data.reading.as_polars), so fitting on it gives the polars fit's model and serving it the same lists."""
    pytest.importorskip("pandas")
    log = string_log()
    assert read_events(log.to_pandas()).frame.equals(read_events(log).frame)
    assert FeedbackDataModule.from_frame(log.to_pandas(), max_len=10).catalog.item_ids.equals(pnfrec.catalog.item_ids)
    assert pnfrec.recommend_log(log.to_pandas(), k=5).equals(pnfrec.recommend_log(log, k=5))
    histories = log.sort("user_id", "timestamp", maintain_order=True).select("user_id", "item_id", liked=pl.col("rating") >= 4)
    assert pnfrec.recommend_many(histories.to_pandas(), k=4).equals(pnfrec.recommend_many(histories, k=4))
    rec = Recommender.fit(log.to_pandas(), run_dir=tmp_path / "run", overrides=TINY)
    assert pl.read_parquet(rec.run_dir / "log.parquet").equals(log)
    assert rec.recommend_many(histories, k=4).equals(pnfrec.recommend_many(histories, k=4))  # same log and seed: the same model


def test_from_module_serves_the_network_in_memory_as_its_checkpoint_does(pnfrec):
    module = NegSeqModule.load_from_checkpoint(pnfrec.run_dir / "checkpoints" / "best.ckpt", weights_only=True)
    data = FeedbackDataModule(path=str(pnfrec.run_dir / "log.parquet"), max_len=10)
    in_memory = Recommender.from_module(module, data)
    assert in_memory.recommend(history=HISTORY, k=5).equals(pnfrec.recommend(history=HISTORY, k=5))


# -- many histories, candidates, scores, neighbours --


def test_recommend_many_is_one_batched_call_that_equals_each_recommend(pnfrec, monkeypatch):
    histories = [HISTORY, HISTORY[:2], [("i120", True)], []]
    calls = []
    ranking = inference.rank_on_threads
    monkeypatch.setattr(inference, "rank_on_threads", lambda *args, **kwargs: calls.append(1) or ranking(*args, **kwargs))
    many = pnfrec.recommend_many(histories, k=4)
    assert len(calls) == 1 and many.columns == ["user_id", "item_id", "rank", "score", "fallback"]
    for position, history in enumerate(histories):  # the same lists; scores up to the encoder's last bits (batch shapes differ)
        alone, mine = pnfrec.recommend(history=history, k=4), many.filter(pl.col("user_id") == position)
        assert mine.select("item_id", "rank", "fallback").equals(alone.select("item_id", "rank", "fallback"))
        assert np.allclose(mine["score"].to_numpy(), alone["score"].to_numpy(), rtol=1e-5)
    assert many.filter(pl.col("user_id") == 3)["fallback"].all() and not many.filter(pl.col("user_id") < 3)["fallback"].any()
    frame = pl.DataFrame([("b", item, liked) for item, liked in HISTORY] + [("a", "i120", True)], schema=["user_id", "item_id", "liked"], orient="row")
    by_frame = pnfrec.recommend_many(frame, k=4)
    assert by_frame["user_id"].unique(maintain_order=True).to_list() == ["b", "a"]  # users in order of first appearance
    assert by_frame.drop("user_id", "score").equals(many.filter(pl.col("user_id").is_in([0, 2])).drop("user_id", "score"))


def test_allowed_and_blocked_items_restrict_the_same_ranking(pnfrec, tmp_path, capsys):
    every = pnfrec.recommend(history=HISTORY, k=pnfrec.catalog.num_items)["item_id"].to_list()  # the whole ranking
    allowed = [every[7], every[2], every[11], "i101"]  # i101 is seen: still never recommended
    assert pnfrec.recommend(history=HISTORY, k=3, items_allowed=allowed)["item_id"].to_list() == [every[2], every[7], every[11]]
    blocked = every[:2] + ["not-an-item"]  # unknown blocked ids are ignored
    assert pnfrec.recommend(history=HISTORY, k=3, items_blocked=blocked)["item_id"].to_list() == every[2:5]
    both = pnfrec.recommend(history=HISTORY, k=3, items_allowed=allowed, items_blocked=[every[2]])
    assert both["item_id"].to_list() == [every[7], every[11]]
    fallback = pnfrec.recommend(history=[], k=2, items_allowed=allowed)  # the popularity fallback obeys them too
    assert fallback["fallback"].all() and set(fallback["item_id"]) <= set(allowed)
    served = pnfrec.recommend_log(string_log(), k=2, items_allowed=allowed, items_blocked=[every[2]])
    assert set(served["item_id"]) <= set(allowed) - {every[2]}
    log = tmp_path / "log.csv"
    string_log().write_csv(log)
    (tmp_path / "allowed.txt").write_text("\n".join(allowed) + "\n")
    (tmp_path / "blocked.txt").write_text(every[2] + "\n")
    run_cli(negseq_main, ["recommend", "--run", str(pnfrec.run_dir), "--data.path", str(log), "--k", "2", "--out", str(tmp_path / "r.parquet"),
                          "--allowed", str(tmp_path / "allowed.txt"), "--blocked", str(tmp_path / "blocked.txt")])
    assert pl.read_parquet(tmp_path / "r.parquet").equals(served.drop("fallback"))


def test_score_gives_the_scores_recommend_ranks_by(pnfrec, sasrec):
    for rec in (pnfrec, sasrec):
        top = rec.recommend(history=HISTORY, k=5)
        candidates = top["item_id"].reverse().to_list() + ["i101"]  # any order, seen items too
        scored = rec.score(HISTORY, candidates)
        assert scored.columns == ["item_id", "score", "fallback"] and scored["item_id"].to_list() == candidates
        assert np.allclose(scored["score"].head(5).to_numpy(), top["score"].reverse().to_numpy(), rtol=1e-6)  # fp64 scores of the same user vector
        assert not scored["fallback"].any()
    unknown_user = pnfrec.score([("i105", False)], ["i101", "i102"])  # a positives model reads no liked item here
    assert unknown_user["fallback"].all()
    assert unknown_user["score"].to_list() == pnfrec.catalog.popularity[pnfrec.catalog.codes(pl.Series(["i101", "i102"]), "t").to_list()].tolist()


def test_similar_items_are_the_nearest_rows_of_the_item_table_by_cosine(pnfrec):
    similar = pnfrec.similar_items(["i101", "i107"], k=3)
    assert similar.columns == ["item_id", "similar_item_id", "rank", "score"] and similar["rank"].to_list() == [1, 2, 3] * 2
    table = torch.nn.functional.normalize(pnfrec.model.items.weight.detach()[1:].double(), dim=1)  # (N, D)
    for item in ("i101", "i107"):
        code = int(pnfrec.catalog.codes(pl.Series([item]), "t")[0])
        cosine = (table @ table[code - 1]).numpy()
        cosine[code - 1] = -np.inf
        expected = [pnfrec.catalog.item_ids[int(j)] for j in np.argsort(-cosine, kind="stable")[:3]]
        mine = similar.filter(pl.col("item_id") == item)
        assert mine["similar_item_id"].to_list() == expected
        assert np.allclose(mine["score"].to_numpy(), np.sort(cosine)[::-1][:3], atol=1e-6)


def test_the_responsiveness_metric_can_measure_the_neighbours_similar_items_gives(pnfrec):
    module = NegSeqModule.load_from_checkpoint(pnfrec.run_dir / "checkpoints" / "best.ckpt", weights_only=True, suppression_neighbours="item_table")
    codes = pnfrec.catalog.codes(pl.Series(["i101", "i107"]), "t")
    neighbours = module.neighbours_of(torch.tensor([*codes.to_list(), 0]))  # (3, 20); the empty slot (0) has none
    assert neighbours.shape == (3, 20) and not neighbours[2].any()
    similar = pnfrec.similar_items(["i101", "i107"], k=20)["similar_item_id"]
    assert pnfrec.catalog.item_ids.gather(pl.Series(neighbours[:2].flatten().numpy() - 1)).to_list() == similar.to_list()


# -- unknown users (#24 defect 5: the fallback is decided by what the model reads) --


def test_a_history_the_model_reads_is_ranked_by_it_whatever_its_signs(pnfrec, sasrec):
    dislikes = sasrec.recommend(disliked=["i101", "i102", "i103"], k=5)
    assert not dislikes["fallback"].any()  # SASRec reads the mixed history: dislikes are an input (popularity before)
    assert dislikes.equals(sasrec.recommend(history=[("i101", False), ("i102", False), ("i103", False)], k=5))
    popular = pnfrec.recommend(disliked=["i101", "i102", "i103"], k=5)
    assert popular["fallback"].all()  # PNFRec's encoder reads liked items only
    seen = set(pnfrec.catalog.codes(pl.Series(["i101", "i102", "i103"]), "t").to_list())
    unseen = [count for code, count in enumerate(pnfrec.catalog.popularity.tolist()) if code and code not in seen]
    assert popular["score"].to_list() == sorted(unseen, reverse=True)[:5]
    assert sasrec.recommend(history=[], k=5)["fallback"].all()


def test_on_unknown_user_popular_skip_or_error(pnfrec):
    histories = [HISTORY, [("i105", False)], [("unknown-item", True)]]
    popular = pnfrec.recommend_many(histories, k=3)
    assert popular.filter(pl.col("fallback"))["user_id"].unique().sort().to_list() == [1, 2]
    skipped = pnfrec.recommend_many(histories, k=3, on_unknown_user="skip")
    assert skipped.equals(popular.filter(pl.col("user_id") == 0))
    assert pnfrec.recommend(history=[("i105", False)], on_unknown_user="skip").height == 0
    with pytest.raises(DataError, match=r"^recommend_many: 2 users have nothing the model reads \(e.g. user 1: no known liked item\)"):
        pnfrec.recommend_many(histories, k=3, on_unknown_user="error")
    log_users = pnfrec.recommend_log(pl.concat([string_log(), pl.DataFrame({"user_id": ["new"], "item_id": ["i101"], "rating": [1.0], "timestamp": [0]})]),
                                     k=3, on_unknown_user="skip")
    assert "new" not in log_users["user_id"].to_list() and log_users["user_id"].n_unique() == 40
    with pytest.raises(ConfigError, match=r"on_unknown_user must be one of \['popular', 'skip', 'error'\], got 'drop'"):
        pnfrec.recommend(history=HISTORY, on_unknown_user="drop")


# -- bad input: one clear line --


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda rec: rec.recommend(history="i101"), r"^recommend: history 0 must be a list of \(item, liked\) pairs in time order, got str$"),
        (lambda rec: rec.recommend(history=["i101", "i102"]), r"^recommend: history 0: each event must be an \(item, liked\) pair, liked True or False; got 'i101'$"),
        (lambda rec: rec.recommend(history=[("i101", 1)]), r"each event must be an \(item, liked\) pair, liked True or False; got \('i101', 1\)"),
        (lambda rec: rec.recommend(liked="i101"), r"^recommend: liked must be a list of item ids, got str$"),
        (lambda rec: rec.recommend(history=[(101, True)]), r"^recommend: item ids are Int64 but the model's are String"),
        (lambda rec: rec.recommend_many([]), r"^recommend_many: no histories; expected a list of \[\(item, liked\), \.\.\.\] lists$"),
        (lambda rec: rec.recommend_many({"u": HISTORY}), r"^recommend_many: histories must be a list of .* or a polars or pandas frame, got dict$"),
        (lambda rec: rec.recommend_many(pl.DataFrame({"user_id": [1], "item_id": ["i101"]})), r"the frame lacks \['liked'\]; expected columns user_id, item_id, liked"),
        (lambda rec: rec.recommend_many(pl.DataFrame({"user_id": [1], "item_id": ["i101"], "liked": [1]})), r"column 'liked' is Int64; expected Boolean"),
        (lambda rec: rec.recommend(history=HISTORY, items_allowed=["i101", "nope"]), r"^items_allowed: 1 of the 2 items are not known to the model \(e.g. 'nope'; its ids are like 'i100'\)"),
        (lambda rec: rec.recommend(history=HISTORY, items_allowed=[]), r"^items_allowed is empty: no item could be recommended; pass None to allow every item$"),
        (lambda rec: rec.recommend(history=HISTORY, items_allowed="i101"), r"^items_allowed: expected a list of item ids, got str$"),
        (lambda rec: rec.score(HISTORY, ["i101", "nope"]), r"^score: items: 1 of the 2 items are not known to the model \(e.g. 'nope'"),
        (lambda rec: rec.similar_items(["nope"]), r"^similar_items: 1 of the 1 items are not known to the model"),
        (lambda rec: rec.recommend(history=HISTORY, k=0), r"^k must be at least 1, got 0$"),
    ],
)
def test_bad_input_is_one_clear_error(pnfrec, call, message):
    with pytest.raises((DataError, ConfigError), match=message):
        call(pnfrec)


def test_negseq_recommend_refuses_an_allowed_id_of_the_wrong_type(tmp_path, capsys):
    from tests.test_serving import run_command

    rec = Recommender.fit(make_log(), run_dir=tmp_path / "run", overrides=TINY)  # integer item ids
    log = tmp_path / "log.csv"
    make_log().write_csv(log)
    (tmp_path / "allowed.txt").write_text("101\nabc\n")
    assert run_command(["recommend", "--run", str(rec.run_dir), "--data.path", str(log), "--out", str(tmp_path / "r.parquet"),
                        "--allowed", str(tmp_path / "allowed.txt")], capsys) == (2, "error: --allowed: 'abc' is not a Int64 id, as the model's item ids are (like 100)")


def test_a_pnfrec_plus_fit_from_a_frame_exports_what_it_serves(tmp_path):
    """Train from a polars frame in Python, serve with the training log moved away, and compare the exported program's
    top-k after export.json's post-processing with Recommender's, for a dislike-demotion (pnfrec_plus) run."""
    from tests.test_inference import ROOT, exported_top_k

    configs = [ROOT / "experiments" / "models" / "pnfrec.yaml", ROOT / "experiments" / "beyond" / "pnfrec_plus.yaml"]
    Recommender.fit(string_log(), config=configs, run_dir=tmp_path / "run", overrides={**TINY, "select_dislike_demotion": [1.5]})
    (tmp_path / "run" / "log.parquet").rename(tmp_path / "moved.parquet")
    rec = Recommender.load(tmp_path / "run")
    assert float(rec.model.dislike_demotion) == 1.5
    log = string_log().sort("user_id", "timestamp")
    histories = [list(zip(user["item_id"], user["rating"] >= 4)) for user in log.partition_by("user_id", maintain_order=True)]
    served = rec.recommend_many(histories, k=5).group_by("user_id", maintain_order=True).agg("item_id")["item_id"].to_list()
    run_cli(negseq_main, ["export", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "export")])
    assert exported_top_k(tmp_path / "export", histories, 5) == served


def test_importing_serving_leaves_an_int_flag_an_int():
    """Recommender.fit runs the command line in a process that imported negseq.serving.api: with rich.console loaded,
    jsonargparse 4.53 read --data.sample_users 150 as 150.0, a sample the data layer refuses."""
    import subprocess
    import sys

    script = (
        "import negseq.serving.api\nfrom jsonargparse import ArgumentParser\nfrom negseq.data import FeedbackDataModule\n"
        "parser = ArgumentParser()\nparser.add_class_arguments(FeedbackDataModule, 'data')\n"
        "print(repr(parser.parse_args(['--data.sample_users', '150']).data.sample_users))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert done.stdout.strip() == "150", done.stderr
