"""Serving a trained run: Recommender, `negseq recommend`, `negseq export`, and `--data.split none` fits.

Two tiny fits are shared by the module: PNFRec with negative scoring on a copy of ml-latest-small
(integer ids, titles beside the log) and a whole-history SASRec on a log with string item ids.
After each fit its training log is renamed, so everything below reads the run directory only.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from negseq import Recommender
from negseq.__main__ import main as negseq_main
from negseq.data import FeedbackDataModule
from negseq.data.catalog import READING_DEFAULTS, STATE_KEY, Catalog
from negseq.data.datamodule import embedded_ratings
from negseq.errors import ConfigError, DataError, run_cli
from negseq.fit import main as fit_main
from negseq.training.module import NegSeqModule
from tests.conftest import make_log
from tests.oracle import read_log

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false", "--trainer.logger", "false"]
SMALL = ["--model.dim", "16", "--trainer.max_epochs", "1", *QUIET]
K = 10
REPO = Path(__file__).parents[1]


@pytest.fixture(scope="module", autouse=True)
def _wandb_off():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WANDB_MODE", "disabled")
        yield


@pytest.fixture(scope="module")
def movielens_run(tmp_path_factory) -> tuple[Path, Path]:
    """(run directory, the renamed training log) of PNFRec with negative scoring 0.5 on ml-latest-small."""
    folder = tmp_path_factory.mktemp("ml")
    log = folder / "ratings.csv.gz"
    shutil.copy(embedded_ratings(), log)
    shutil.copy(embedded_ratings().with_name("movies.csv.gz"), folder / "movies.csv.gz")
    run_dir = folder / "run"
    fit_main(["--data.path", str(log), "--run_dir", str(run_dir), "--model.negative_scoring", "0.5", *SMALL])
    moved = log.rename(folder / "moved-ratings.csv.gz")
    return run_dir, moved


@pytest.fixture(scope="module")
def string_run(tmp_path_factory) -> tuple[Path, pl.DataFrame]:
    """(run directory, its log) of a whole-history SASRec on a log with string user and item ids."""
    folder = tmp_path_factory.mktemp("str")
    log = make_log().with_columns(item_id="i" + pl.col("item_id").cast(pl.String))
    path = folder / "log.csv"
    log.write_csv(path)
    run_dir = folder / "run"
    fit_main(["--data.path", str(path), "--run_dir", str(run_dir), "--model.family", "whole_history", "--model.alpha", "0", "--model.beta", "0",
              "--data.max_len", "10", *SMALL])
    path.rename(folder / "moved.csv")
    return run_dir, log


def movielens_events(path: Path) -> pl.DataFrame:
    return read_log(path, format="movielens")  # user, item, feedback, time, row in event order


def without_last_event(events: pl.DataFrame, users: list[int], items: pl.Series) -> pl.DataFrame:
    """The users' events of the catalogue's ``items`` (those the 5-core filters kept) minus each one's last (the
    leave-last-out target), as a generic-format log."""
    kept = events.filter(pl.col("user").is_in(users) & pl.col("item").is_in(items.implode())).filter(pl.int_range(pl.len()).over("user") < pl.len().over("user") - 1)
    return kept.select(user_id="user", item_id="item", rating="feedback", timestamp="time")


# -- a self-contained model --


@pytest.mark.slow
def test_a_fresh_process_with_only_the_run_directory_recommends_as_the_fit_did(movielens_run, tmp_path):
    run_dir, moved = movielens_run
    fit_recommendations = pl.read_parquet(run_dir / "recommendations.parquet")
    users = fit_recommendations["user_id"].unique().sort().head(25).to_list()
    histories = without_last_event(movielens_events(moved), users, FeedbackDataModule().split.item_ids)
    histories.write_parquet(tmp_path / "histories.parquet")
    one = histories.filter(pl.col("user_id") == users[0])
    (tmp_path / "one.json").write_text(json.dumps({
        "liked": one.filter(pl.col("rating") >= 4)["item_id"].to_list(), "disliked": one.filter(pl.col("rating") < 4)["item_id"].to_list(),
    }))
    script = textwrap.dedent(f"""
        import json, polars as pl
        from negseq import Recommender
        rec = Recommender.load({str(run_dir)!r})
        rec.recommend_log({str(tmp_path / "histories.parquet")!r}, k={K}).write_parquet({str(tmp_path / "log_recs.parquet")!r})
        rec.recommend(**json.load(open({str(tmp_path / "one.json")!r})), k={K}).write_parquet({str(tmp_path / "one_recs.parquet")!r})
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)  # this checkout's negseq
    assert done.returncode == 0, done.stderr
    served = pl.read_parquet(tmp_path / "log_recs.parquet")
    assert served.schema["user_id"] == pl.Int64 and served.schema["item_id"] == pl.Int64
    assert not served["fallback"].any()
    expected = fit_recommendations.filter(pl.col("user_id").is_in(users)).sort("user_id", "rank")
    assert served.select("user_id", "item_id", "rank").equals(expected.select("user_id", "item_id", "rank"))
    assert np.allclose(served["score"].to_numpy(), expected["score"].to_numpy(), atol=1e-5)
    one_recs = pl.read_parquet(tmp_path / "one_recs.parquet")
    assert one_recs.columns == ["item_id", "score", "rank", "fallback"]
    assert one_recs["item_id"].to_list() == expected.filter(pl.col("user_id") == users[0])["item_id"].to_list()


def test_the_checkpoint_carries_the_catalogue_and_loads_with_weights_only(movielens_run):
    run_dir, _ = movielens_run
    checkpoint = torch.load(run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    assert float(checkpoint["state_dict"]["model.negative_scoring"]) == 0.5
    catalog = Catalog.from_state(checkpoint[STATE_KEY])
    data = FeedbackDataModule()  # the same data as the copy the run trained on
    assert catalog.item_ids.equals(data.split.item_ids, check_names=False)
    liked = data.split.train.filter("positive").group_by("item").len()
    assert catalog.popularity[liked["item"].to_numpy()].tolist() == liked["len"].cast(pl.Float32).to_list()
    assert catalog.popularity.sum() == data.split.train["positive"].sum()
    assert catalog.reading == {**READING_DEFAULTS, "threshold": 4.0} and catalog.log_format == "movielens"
    assert catalog.columns == {"user": "userId", "item": "movieId", "feedback": "rating", "time": "timestamp"}
    assert catalog.max_len == 50
    assert catalog.frame().filter(pl.col("item_id") == 1)["title"].item() == "Toy Story (1995)"


@pytest.mark.parametrize("ids", [[5, 17, 2**40], ["b", "a", "ü"]])
def test_a_catalogue_round_trips_through_torch_save_with_weights_only(tmp_path, ids):
    item_ids = pl.Series("item_id", sorted(ids))
    catalog = Catalog(item_ids, torch.tensor([0.0, 3, 1, 2]), pl.Series("title", ["x", None, "z"]), {"format": "auto", "threshold": 4.0},
                      {"user": "u", "item": "i", "feedback": "f", "time": "t"}, 7)
    torch.save(catalog.state_dict(), tmp_path / "state.pt")
    loaded = Catalog.from_state(torch.load(tmp_path / "state.pt", weights_only=True))
    assert loaded.item_ids.dtype == item_ids.dtype and loaded.item_ids.to_list() == sorted(ids)
    assert loaded.titles.to_list() == ["x", None, "z"] and loaded.popularity.tolist() == [0, 3, 1, 2] and loaded.max_len == 7
    assert loaded.codes(pl.Series([sorted(ids)[2], sorted(ids)[0]]), "test").to_list() == [3, 1]
    other = pl.Series(["a"]) if isinstance(ids[0], int) else pl.Series([1])
    with pytest.raises(DataError, match=r"test: item ids are .* but the model's are"):
        loaded.codes(other, "test")


def test_a_checkpoint_of_other_item_ids_is_refused_by_the_data(tmp_path):
    data = FeedbackDataModule(path=_write(tmp_path / "a.csv", make_log()))
    shifted = FeedbackDataModule(path=_write(tmp_path / "b.csv", make_log().with_columns(item_id=pl.col("item_id") + 1)))
    assert data.num_items == shifted.num_items == 30  # the same size: only the ids tell them apart
    data.load_state_dict(data.state_dict())  # its own catalogue: accepted
    with pytest.raises(DataError, match=r"b.csv: the checkpoint was trained on other item ids \(30 Int64 ids\) than this data's \(30 Int64\)"):
        shifted.load_state_dict(data.state_dict())


def _write(path: Path, frame: pl.DataFrame) -> str:
    frame.write_csv(path)
    return str(path)


# -- recommending --


def test_every_user_of_a_log_gets_k_unseen_items_and_the_fallback_is_popularity(movielens_run, caplog):
    run_dir, moved = movielens_run
    rec = Recommender.load(run_dir)
    events = movielens_events(moved)
    log = events.select(userId="user", movieId="item", rating="feedback", timestamp="time")
    popular = rec.catalog.item_ids[int(rec.catalog.popularity.argmax()) - 1]
    extra = pl.DataFrame({  # user -1: only a disliked known item; user -2: only an unknown item
        "userId": [-1, -2], "movieId": [popular, 10**9], "rating": [1.0, 5.0], "timestamp": [0, 0],
    })
    served = rec.recommend_log(pl.concat([log, extra]), k=K)
    assert served["user_id"].n_unique() == events["user"].n_unique() + 2
    assert (served.group_by("user_id").len()["len"] == K).all()
    assert served.group_by("user_id").agg(pl.col("rank").sort())["rank"].to_list()[0] == list(range(1, K + 1))
    seen = log.select(user_id="userId", item_id="movieId").unique()
    assert served.join(seen, on=["user_id", "item_id"], how="semi").height == 0
    assert "ignored 10563 events of 6075 items the model does not know" in caplog.text  # the 5-core filter's items, and 10**9
    order = np.lexsort((np.arange(rec.catalog.num_items + 1), -rec.catalog.popularity.numpy()))  # popularity, then smaller code
    ranked = [rec.catalog.item_ids[int(code) - 1] for code in order if code > 0]
    fallback = served.filter(pl.col("fallback"))
    known_likes = events.filter((pl.col("feedback") >= 4) & pl.col("item").is_in(rec.catalog.item_ids.implode()))["user"]
    assert set(fallback["user_id"]) == set(events["user"]) - set(known_likes) | {-1, -2}  # user 442 has none in the log either
    assert fallback.filter(pl.col("user_id") == -2)["item_id"].to_list() == ranked[:K]
    assert fallback.filter(pl.col("user_id") == -1)["item_id"].to_list() == [i for i in ranked if i != popular][:K]
    assert fallback.filter(pl.col("user_id") == -2)["score"].to_list() == sorted(rec.catalog.popularity.tolist(), reverse=True)[:K]
    with_seen = rec.recommend_log(extra.head(1), k=K, exclude_seen=False)
    assert with_seen["item_id"].to_list() == ranked[:K]


def test_unknown_items_are_ignored_and_a_history_without_known_likes_falls_back(movielens_run, caplog):
    rec = Recommender.load(movielens_run[0])
    plain = rec.recommend(liked=[1, 2, 3], disliked=[4], k=5)
    assert rec.recommend(liked=[1, -7, 2, 3], disliked=[4, -8], k=5).equals(plain)
    assert "recommend: ignored 2 events of 2 items the model does not know" in caplog.text
    assert plain.height == 5 and not set(plain["item_id"]) & {1, 2, 3, 4}
    assert rec.recommend(liked=[], disliked=[], k=3)["score"].to_list() == sorted(rec.catalog.popularity.tolist(), reverse=True)[:3]
    assert rec.recommend(liked=[1, 2, 3], disliked=[4], k=5, exclude_seen=False).height == 5
    # the negative encoder reads the dislikes: negative scoring 0.5 changes the scores
    assert not np.allclose(rec.recommend(liked=[1, 2, 3], disliked=[4, 5, 6], k=5)["score"].to_numpy(), plain["score"].to_numpy())
    with pytest.raises(DataError, match=r"item ids must all be integers or all strings"):
        rec.recommend(liked=[1, "a"])


def test_string_ids_and_a_whole_history_model(string_run):
    run_dir, log = string_run
    rec = Recommender.load(run_dir)
    assert rec.family == "whole_history" and rec.catalog.item_ids.dtype == pl.String
    history = [("i101", True), ("i105", False), ("i110", True)]
    by_history = rec.recommend(history=history, k=5)
    assert by_history.schema["item_id"] == pl.String and not set(by_history["item_id"]) & {"i101", "i105", "i110"}
    assert rec.recommend(liked=["i101", "i110"], disliked=["i105"], k=5).equals(rec.recommend(history=[history[1], history[0], history[2]], k=5))
    assert not rec.recommend(history=history[::-1], k=5)["score"].equals(by_history["score"])  # order matters to a whole-history model
    served = rec.recommend_log(log, k=5)
    assert served.schema["user_id"] == pl.String and served["user_id"].n_unique() == log["user_id"].n_unique()
    with pytest.raises(DataError, match=r"item ids are Int64 but the model's are String"):
        rec.recommend(liked=[101])


# -- the command line --


def run_command(args: list[str], capsys) -> tuple[int, str]:
    try:
        run_cli(negseq_main, args)
    except SystemExit as stopped:
        return stopped.code, capsys.readouterr().err.strip().splitlines()[-1]
    return 0, capsys.readouterr().out


def test_negseq_recommend_writes_every_user_of_ml_latest_small(movielens_run, tmp_path, capsys):
    run_dir, moved = movielens_run
    out = tmp_path / "recs.parquet"
    code, _ = run_command(["recommend", "--run", str(run_dir), "--data.path", str(moved), "--data.format", "movielens",
                           "--k", "20", "--out", str(out), "--batch_size", "100"], capsys)
    assert code == 0
    recs = pl.read_parquet(out)
    assert recs.columns == ["user_id", "item_id", "rank", "score"] and recs.schema["user_id"] == pl.Int64
    assert recs["user_id"].n_unique() == 610 and recs.height == 610 * 20
    assert recs.equals(Recommender.load(run_dir).recommend_log(moved, k=20, format="movielens", batch_size=100).drop("fallback"))
    (tmp_path / "ids.txt").write_text("3\n1\n99999\n")
    code, _ = run_command(["recommend", "--run", str(run_dir), "--data.path", str(moved), "--data.format", "movielens",
                           "--out", str(out), "--users", str(tmp_path / "ids.txt")], capsys)
    assert code == 0 and sorted(pl.read_parquet(out)["user_id"].unique()) == [1, 3]


def test_negseq_recommend_refuses_bad_input_in_one_line(movielens_run, tmp_path, capsys):
    run_dir, moved = movielens_run
    out = str(tmp_path / "recs.parquet")
    assert run_command(["recommend", "--run", str(tmp_path), "--data.path", str(moved), "--out", out], capsys) == (
        2, f"error: {tmp_path}: no checkpoints/best.ckpt; expected the directory of a finished fit or a .ckpt file")
    assert run_command(["recommend", "--run", str(run_dir), "--data.path", str(moved), "--out", out, "--k", "0"], capsys) == (
        2, "error: k must be at least 1, got 0")
    assert run_command(["recommend", "--run", str(run_dir), "--data.path", str(moved), "--out", out, "--users", str(tmp_path / "no.txt")], capsys) == (
        2, f"error: --users {tmp_path / 'no.txt'}: no such file; expected a text file of ids, one a line")
    old = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)
    del old[STATE_KEY]  # a checkpoint written before checkpoints carried the catalogue
    torch.save(old, tmp_path / "old.ckpt")
    assert run_command(["recommend", "--run", str(tmp_path / "old.ckpt"), "--data.path", str(moved), "--out", out], capsys) == (
        2, f"error: {tmp_path / 'old.ckpt'}: the checkpoint holds no item catalogue (written by an older negseq); refit the run to serve it")
    wrong = tmp_path / "log.csv"
    pl.DataFrame({"user": [1], "movieId": [1], "rating": [5.0], "timestamp": [0]}).write_csv(wrong)
    code, message = run_command(["recommend", "--run", str(run_dir), "--data.path", str(wrong), "--out", out], capsys)
    assert code == 2 and message.startswith(f"error: {wrong}: missing user column 'user_id'")
    code, message = run_command(["recommend", "--run", str(run_dir), "--data.path", str(wrong), "--data.user_col", "user",
                                 "--data.item_col", "movieId", "--out", out], capsys)
    assert code == 0  # the same file with its columns named
    unknown = tmp_path / "unknown.csv"
    pl.DataFrame({"user_id": [1, 2], "item_id": [10**9, 10**9 + 1], "rating": [5.0, 1.0], "timestamp": [0, 1]}).write_csv(unknown)
    code, message = run_command(["recommend", "--run", str(run_dir), "--data.path", str(unknown), "--out", out], capsys)
    assert code == 2 and message == (
        f"error: {unknown}: none of its 2 items is known to the model (e.g. 1000000000; the model's ids are like 1); "
        "expected a log with the training log's item ids"
    )


def test_a_bf16_encoder_recommends_unseen_items_close_to_fp32s_and_bad_precision_is_refused(movielens_run, tmp_path, capsys):
    """bf16 autocast changes the user vectors in their last bits, so near-ties may swap: most of each top-10 agrees."""
    run_dir, moved = movielens_run
    out = tmp_path / "recs.parquet"
    code, _ = run_command(["recommend", "--run", str(run_dir), "--data.path", str(moved), "--data.format", "movielens",
                           "--k", "10", "--out", str(out), "--precision", "bf16"], capsys)
    assert code == 0
    fast = pl.read_parquet(out)
    exact = Recommender.load(run_dir).recommend_log(moved, k=10, format="movielens")
    assert fast.equals(Recommender.load(run_dir, precision="bf16").recommend_log(moved, k=10, format="movielens").drop("fallback"))
    assert fast.height == exact.height == 610 * 10
    seen = movielens_events(moved).select(user_id="user", item_id="item").unique()
    assert fast.join(seen, on=["user_id", "item_id"], how="semi").height == 0
    shared = fast.join(exact, on=["user_id", "item_id"]).height / exact.height
    assert 0.9 <= shared < 1.0 or shared == 1.0 and not fast["score"].equals(exact["score"])  # bf16 did run: scores moved
    code, message = run_command(["recommend", "--run", str(run_dir), "--data.path", str(moved), "--out", str(out), "--precision", "fp16"], capsys)
    assert (code, message) == (2, "error: precision must be one of ['fp32', 'bf16'], got 'fp16'")
    with pytest.raises(ConfigError, match=r"precision must be one of \['fp32', 'bf16'\], got 'fp16'"):
        Recommender.load(run_dir, precision="fp16")



def test_one_chunk_of_users_per_thread_recommends_as_one_thread_and_restores_the_thread_count(movielens_run):
    """Two workers (each 256 users, torch single-threaded meanwhile) give the same top-k as one thread, batch sizes apart."""
    run_dir, moved = movielens_run
    rec = Recommender.load(run_dir)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = rec.recommend_log(moved, k=K, format="movielens", batch_size=600)
        torch.set_num_threads(2)
        assert rec.recommend_log(moved, k=K, format="movielens", batch_size=600).equals(single)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


# -- export --


def encoded_inputs(rec: Recommender, liked: list, disliked: list) -> tuple[torch.Tensor, torch.Tensor, set]:
    """(1, L) left-padded liked and disliked codes and the set of seen codes, built by hand (unknown items dropped)."""
    def padded(ids):
        codes = rec.catalog.codes(pl.Series(ids, dtype=pl.Int64), "test").drop_nulls().to_list()[-rec.catalog.max_len:]
        return torch.tensor([[0] * (rec.catalog.max_len - len(codes)) + codes])
    return padded(liked), padded(disliked), set(rec.catalog.codes(pl.Series(liked + disliked), "test").to_list())


def test_the_exported_program_ranks_as_the_recommender(movielens_run, tmp_path, capsys):
    run_dir, moved = movielens_run
    assert run_command(["export", "--run", str(run_dir), "--out", str(tmp_path / "export")], capsys)[0] == 0
    program = torch.export.load(tmp_path / "export" / "user_encoder.pt2").module()
    items = torch.from_numpy(np.load(tmp_path / "export" / "items.npy"))  # (N, D)
    vocabulary = pl.read_parquet(tmp_path / "export" / "items.parquet")
    manifest = json.loads((tmp_path / "export" / "export.json").read_text())
    assert manifest["negative_scoring"] == 0.5 and manifest["inputs"] == ["positives", "negatives"] and manifest["dislike_demotion"] == 0.0
    assert vocabulary["popularity"].to_list() == Recommender.load(run_dir).catalog.popularity[1:].tolist()  # the fallback's
    rec = Recommender.load(run_dir)
    assert vocabulary["code"].to_list() == list(range(1, rec.catalog.num_items + 1)) and items.shape == (rec.catalog.num_items, 16)
    events = movielens_events(moved)
    histories = []
    for user in (1, 2, 5):
        mine = events.filter(pl.col("user") == user)
        liked, disliked = mine.filter(pl.col("feedback") >= 4)["item"].to_list(), mine.filter(pl.col("feedback") < 4)["item"].to_list()
        histories.append((liked, disliked, encoded_inputs(rec, liked, disliked)))
    positives = torch.cat([h[2][0] for h in histories])  # (3, L)
    negatives = torch.cat([h[2][1] for h in histories])
    users, demote = program(positives, negatives)  # (3, D): a batch of 3, exported with 2
    assert not demote.any()  # no dislike demotion: zero vectors
    assert torch.allclose(program(positives[:1], negatives[:1])[0], users[:1], atol=1e-5)
    scores = users @ items.T  # (3, N): column c is code c + 1
    for row, (liked, disliked, (_, _, seen)) in enumerate(histories):
        scores[row, [code - 1 for code in seen if code]] = float("-inf")
        top = vocabulary["item_id"].gather(scores[row].topk(K).indices.numpy()).to_list()
        assert top == rec.recommend(liked=liked, disliked=disliked, k=K)["item_id"].to_list()


def test_onnx_export(movielens_run, tmp_path):
    pytest.importorskip("onnx")
    from negseq.serving.export import export_run

    files = export_run(movielens_run[0], tmp_path)
    assert Path(files["onnx"]).stat().st_size > 0


# -- training on every event --


def test_split_none_trains_on_every_event_for_a_fixed_number_of_epochs(tmp_path, tiny_log):
    run_dir = tmp_path / "run"
    metrics = fit_main(["--data.path", tiny_log, "--data.split", "none", "--run_dir", str(run_dir), "--model.dim", "8",
                        "--trainer.max_epochs", "2", *QUIET])
    assert metrics == json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics) == {"best_epoch", "fit_seconds"} and metrics["best_epoch"] == 2
    assert {p.name for p in run_dir.iterdir()} >= {"metrics.json", "config.yaml", "history.jsonl", "checkpoints"}
    assert not (run_dir / "recommendations.parquet").exists()
    epochs = {name: torch.load(run_dir / "checkpoints" / name, weights_only=True)["epoch"] for name in ("best.ckpt", "last.ckpt")}
    assert epochs == {"best.ckpt": 1, "last.ckpt": 1}  # 0-based: the last epoch's model is the one served
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in history] == [1, 2] and not any(key.startswith("val/") for key in history[0])
    data = FeedbackDataModule(path=tiny_log, split="none")
    assert data.split.validation.height == data.split.test.height == 0
    assert data.split.train.height == FeedbackDataModule(path=tiny_log).split.train.height + 40  # + each user's held-out event
    recs = Recommender.load(run_dir).recommend_log(tiny_log, k=5)
    assert recs["user_id"].n_unique() == 40
    with pytest.raises(ConfigError, match="--select_negative_scoring chooses on validation"):
        fit_main(["--data.path", tiny_log, "--data.split", "none", "--run_dir", str(tmp_path / "r2"), "--select_negative_scoring", "[0, 1]", *QUIET])


def test_a_frame_of_zvuk_plays_is_served_with_the_session_sum_as_its_file(tmp_path):
    """Three plays of one track in a session are one event of their summed seconds, from a file or from a frame (#24, 3)."""
    path = Path(__file__).parent / "data" / "fixtures" / "zvuk" / "zvuk-interactions.parquet"
    data = FeedbackDataModule(path=str(path), min_item_users=1, min_user_items=1, max_len=5, cache=False)
    torch.manual_seed(0)
    rec = Recommender(NegSeqModule(data.num_items, data.num_train_items, max_len=5, dim=8).model, data.catalog)
    assert rec.catalog.log_format == "zvuk"
    from_file, _ = rec._read(path, {})
    from_frame, _ = rec._read(pl.read_parquet(path), {})
    assert from_frame.equals(from_file) and from_file.height == 11  # 14 plays, 11 (user, session, track) events
    assert rec.recommend_log(pl.read_parquet(path), k=3).equals(rec.recommend_log(path, k=3))
