"""FeedbackDataModule end to end on small logs written into tmp_path: loaders, sizes, decoding, split settings."""

from __future__ import annotations

import re

import polars as pl
import pytest
import torch

from negseq.data import FeedbackDataModule
from negseq.errors import DataError

ITEMS = [f"item_{c}" for c in "abcdefgh"]
MAX_LEN = 3


@pytest.fixture
def small_log(tmp_path) -> tuple:
    """12 users x 8 string items, 5 or 6 distinct items per user, every item rated by >= 7 users (survives the 5-cores).

    Each user's last event is positive unless the user number is a multiple of 3.
    """
    rows = []
    for u in range(12):
        order = [ITEMS[(u + k) % 8] for k in range(8)]
        order = [item for item in order if item not in (ITEMS[u % 8], ITEMS[(3 * u + 5) % 8])][: 5 + u % 2]
        for k, item in enumerate(order):
            last = k == len(order) - 1
            rating = (5 if u % 3 else 2) if last else (u + k) % 5 + 1
            time = 1000 * u + 10 * k if u % 2 else 50000 - 1000 * u + 10 * k
            rows.append((f"user_{u:02d}", item, float(rating), time))
    frame = pl.DataFrame(rows, schema=["user_id", "item_id", "rating", "timestamp"], orient="row")
    path = tmp_path / "log.csv"
    frame.write_csv(path)
    return path, frame


def small_module(path, **kwargs) -> FeedbackDataModule:
    return FeedbackDataModule(path=str(path), max_len=MAX_LEN, batch_size=5, eval_batch_size=4, **kwargs)


def rows_of(batch: dict) -> torch.Tensor:
    """One row per user: the four training matrices side by side."""
    return torch.cat([batch["positives"], batch["negatives"], batch["history"], batch["history_positive"].long()], dim=1)


def test_sizes(small_log):
    path, frame = small_log
    data = small_module(path)
    assert data.num_items == frame["item_id"].n_unique() == 8
    assert data.num_train_items == 8
    assert len(data.train_sequences) == 12  # every user keeps >= 4 training events
    assert len(data.test_sequences) == 6


def test_train_batches_cover_every_user_once_per_epoch(small_log):
    path, _ = small_log
    data = small_module(path)
    data.setup("fit")
    everyone = rows_of(data.train_sequences.take(torch.arange(len(data.train_sequences))))
    assert torch.unique(everyone, dim=0).shape[0] == 12  # rows identify users, so a multiset compare is exact
    for _ in range(2):  # two epochs, each reshuffled
        batches = list(data.train_dataloader())
        assert [len(b["positives"]) for b in batches] == [5, 5, 2]  # last partial batch kept
        for batch in batches:
            assert set(batch) == {"positives", "negatives", "history", "history_positive", "positives_order", "negatives_order"}
            for value in batch.values():
                assert value.shape == (len(batch["positives"]), MAX_LEN + 1)
            assert batch["history_positive"].dtype == torch.bool
        seen = rows_of({key: torch.cat([b[key] for b in batches]) for key in batches[0]})
        assert sorted(map(tuple, seen.tolist())) == sorted(map(tuple, everyone.tolist()))


def test_train_loader_shuffles(small_log):
    path, _ = small_log
    data = small_module(path)
    torch.manual_seed(0)
    orders = {tuple(map(tuple, torch.cat([b["history"] for b in data.train_dataloader()]).tolist())) for _ in range(5)}
    assert len(orders) > 1


def test_eval_loaders_yield_users_once_in_order(small_log):
    path, _ = small_log
    data = small_module(path)
    for loader, events in ((data.val_dataloader(), data.split.validation), (data.test_dataloader(), data.split.test)):
        batches = list(loader)
        assert all(len(b["user"]) <= 4 for b in batches)
        users = torch.cat([b["user"] for b in batches]).tolist()
        assert users == sorted(events["user"].unique().to_list())
        for batch in batches:
            assert set(batch) == {"user", "positives", "negatives", "history", "history_positive", "seen", "target", "target_positive"}
            assert batch["positives"].shape == batch["history"].shape == (len(batch["user"]), MAX_LEN)
    assert [len(b["user"]) for b in data.test_dataloader()] == [4, 2]
    assert torch.cat([b["user"] for b in data.predict_dataloader()]).tolist() == torch.cat([b["user"] for b in data.test_dataloader()]).tolist()


def test_validation_targets_positive_test_targets_are_last_events(small_log):
    path, frame = small_log
    data = small_module(path)
    assert bool(torch.cat([b["target_positive"] for b in data.val_dataloader()]).all())
    last = frame.sort("timestamp").group_by("user_id", maintain_order=True).last()
    expected = {u: (i, r >= 4.0) for u, i, r in last.select("user_id", "item_id", "rating").rows()}
    batches = list(data.test_dataloader())
    users = torch.cat([b["user"] for b in batches])
    targets = torch.cat([b["target"] for b in batches])
    signs = torch.cat([b["target_positive"] for b in batches]).tolist()
    decoded = data.decode(users.tolist(), targets.tolist())
    assert decoded.columns == ["user_id", "item_id"]
    for (user, item), positive in zip(decoded.rows(), signs):
        assert expected[user] == (item, positive)


def test_decode_returns_original_string_ids(small_log):
    path, frame = small_log
    data = small_module(path)
    decoded = data.decode([0, 11, 5], [1, 8, 3])
    assert decoded.rows() == [("user_00", "item_a"), ("user_11", "item_h"), ("user_05", "item_c")]
    assert decoded.schema == pl.Schema({"user_id": pl.String, "item_id": pl.String})
    assert data.decode(pl.Series([1]), pl.Series([2])).rows() == [("user_01", "item_b")]


def test_core_filters_are_applied(small_log, tmp_path):
    path, frame = small_log
    # one extra item rated by one user only: dropped by the default filter, kept without it
    extra = pl.concat([frame, pl.DataFrame([("user_00", "item_z", 5.0, 99999)], schema=frame.schema, orient="row")])
    extra_path = tmp_path / "extra.csv"
    extra.write_csv(extra_path)
    assert small_module(extra_path).num_items == 8
    assert small_module(extra_path, min_item_users=1, min_user_items=1).num_items == 9


def test_threshold_sets_the_signs(small_log):
    path, frame = small_log
    # train = every event but each user's last (timestamps are distinct within a user)
    train_ratings = frame.sort("timestamp").filter(pl.int_range(pl.len()).over("user_id") < pl.len().over("user_id") - 1)["rating"]
    for threshold in (1.0, 3.0, 5.0):
        train = small_module(path, threshold=threshold).split.train
        assert train.height == train_ratings.len()
        assert int(train["positive"].sum()) == int((train_ratings >= threshold).sum())


def test_unknown_split_name():
    with pytest.raises(DataError, match=re.escape("unknown split 'random'; expected one of ['leave_last_out', 'temporal', 'presplit', 'none']")):
        FeedbackDataModule(split="random")


def test_max_len_must_be_positive():
    with pytest.raises(DataError, match=re.escape("max_len must be at least 1, got 0")):
        FeedbackDataModule(max_len=0)


def test_bad_file_surfaces_at_setup(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,rating,timestamp\n1,2,great,3\n")
    data = FeedbackDataModule(path=str(path))
    with pytest.raises(DataError, match=re.escape(f"{path}: feedback column 'rating' has type String")):
        data.setup("fit")


def test_no_validation_users_is_a_data_error(small_log, tmp_path):
    path, frame = small_log
    negative_last = tmp_path / "neg.csv"
    frame.with_columns(rating=pl.when(pl.col("timestamp") == pl.col("timestamp").max().over("user_id")).then(1.0).otherwise(pl.col("rating"))).write_csv(negative_last)
    data = small_module(negative_last)
    with pytest.raises(DataError, match=re.escape(f"{negative_last}: the leave_last_out split leaves no validation users")):
        data.setup("fit")


def write_presplit(directory, names=("train.parquet", "validation.parquet", "test.parquet")):
    directory.mkdir()
    train = pl.DataFrame({"user_id": [1, 1, 2, 2, 3, 3], "item_id": [10, 20, 20, 30, 10, 30], "rating": [5.0, 2, 4, 5, 1, 4], "timestamp": [1, 2, 3, 4, 5, 6]})
    # held-out ids written as int32 on purpose: another writer, another integer width
    narrow = {"user_id": pl.Int32, "item_id": pl.Int32}
    validation = pl.DataFrame({"user_id": [1, 1], "item_id": [30, 20], "rating": [5.0, 4], "timestamp": [10, 11]}, schema_overrides=narrow)
    test = pl.DataFrame({"user_id": [2, 3, 3], "item_id": [10, 20, 99], "rating": [4.0, 1, 5], "timestamp": [20, 21, 22]}, schema_overrides=narrow)
    for name, part in zip(("train.parquet", "validation.parquet", "test.parquet"), (train, validation, test)):
        if name in names:
            part.write_parquet(directory / name)
    return directory


def test_presplit_directory(tmp_path):
    directory = write_presplit(tmp_path / "split")
    data = FeedbackDataModule(path=str(directory), split="presplit", max_len=MAX_LEN)
    assert data.num_items == 3
    val = next(iter(data.val_dataloader()))
    assert data.decode(val["user"].tolist(), val["target"].tolist()).rows() == [(1, 20)]
    assert val["positives"].tolist() == [[0, 1, 3]]  # train positive 10, then validation history 30
    test = next(iter(data.test_dataloader()))
    assert data.decode(test["user"].tolist(), test["target"].tolist()).rows() == [(2, 10), (3, 20)]  # item 99 is not in train
    assert test["target_positive"].tolist() == [True, False]


def test_presplit_directory_missing_file(tmp_path):
    directory = write_presplit(tmp_path / "split", names=("train.parquet", "validation.parquet"))
    data = FeedbackDataModule(path=str(directory), split="presplit")
    with pytest.raises(DataError, match=re.escape(f"{directory}: presplit directory lacks ['test.parquet']")):
        data.num_items


def test_temporal_split_through_the_module(small_log):
    path, frame = small_log
    data = small_module(path, split="temporal", min_item_users=1, min_user_items=1)
    cut = frame["timestamp"].quantile(0.9, interpolation="linear")
    assert data.split.train["time"].max() < cut
    assert (pl.concat([data.split.validation, data.split.test]).filter("is_target")["time"] >= cut).all()


def test_embedded_default():
    data = FeedbackDataModule(max_len=10)
    assert data.num_items == 3650
    assert len(data.test_sequences) == 305
    assert len(data.train_sequences) == 610


def test_unknown_validation_targets_is_a_data_error():
    with pytest.raises(DataError, match="unknown validation_targets 'negative'; expected one of \\['positive', 'all'\\]"):
        FeedbackDataModule(validation_targets="negative")


def test_holdout_every_user_evaluates_every_user():
    data = FeedbackDataModule(max_len=10, holdout="every_user", validation_targets="all")
    assert len(data.test_sequences) == len(data.validation_sequences) == 610  # half_users: 305 test users (test_embedded_default)


def test_holdout_needs_leave_last_out():
    with pytest.raises(DataError, match="holdout 'every_user' applies to split 'leave_last_out', not 'temporal'"):
        FeedbackDataModule(split="temporal", holdout="every_user")
    with pytest.raises(DataError, match="unknown holdout 'all'"):
        FeedbackDataModule(holdout="all")


def test_neighbours_must_be_positive():
    with pytest.raises(DataError, match="neighbours must be at least 1, got 0"):
        FeedbackDataModule(neighbours=0)
