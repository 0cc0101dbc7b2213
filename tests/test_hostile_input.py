"""Hostile logs: random small logs (duplicate events, equal timestamps, huge and unicode ids, one-item
catalogues, users with a single event, ...) either go through the whole pipeline -- a split that agrees
with an independent reference, finite losses, valid ranks, metrics and recommendations -- or stop
with a documented :class:`negseq.errors.NegSeqError`, never a traceback from polars or torch.
"""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from negseq.data import FeedbackDataModule
from negseq.errors import DataError, NegSeqError, run_cli
from negseq.fit import main as fit_main
from negseq.training.module import NegSeqModule
from negseq.training.results import recommendations_frame
from tests.oracle import read_log

MAX_LEN = 3
THRESHOLD = 4.0
INT64_MAX = 2**63 - 1

# id pools, one chosen per column: the log then uses the first few ids of the pool
ID_POOLS = {
    "small": [1, 2, 3, 4, 5, 6],
    "negative": [0, -1, -7, 2, 3, 4],
    "huge": [INT64_MAX, -(2**63), INT64_MAX - 1, 10**18, 1, -1],
    "beyond_int64": [2**64 - 1, 5, 6, 7, 8, 9],  # not representable as Int64: a DataError
    "unicode": ["é", "😀", "a,b", 'q"uote', " sp ", "\u202eltr"],
    "text_and_empty": ["", "x", "y", "z", "0x1", "long-" * 10],
}
TIME_POOLS = {"ties": [7, 7, 7, 8], "spread": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], "extreme": [-(2**62), 0, 2**62, INT64_MAX], "float": [0.5, 1.5, 1e12, -3.25]}
RATINGS = [1.0, 2.0, 3.5, 4.0, 5.0, 5.0, math.inf]


# the kind of ids of a column; 2**64 - 1 ids (refused) are one draw in eleven
ID_KINDS = ["small", "small", "small", "negative", "huge", "huge", "unicode", "unicode", "text_and_empty", "text_and_empty", "beyond_int64"]


@st.composite
def logs(draw):
    users = ID_POOLS[draw(st.sampled_from(ID_KINDS))][: draw(st.integers(1, 6))]
    items = ID_POOLS[draw(st.sampled_from(ID_KINDS))][: draw(st.integers(1, 6))]  # 1: a one-item catalogue
    times = TIME_POOLS[draw(st.sampled_from(sorted(TIME_POOLS)))]
    event = st.tuples(st.sampled_from(items), st.sampled_from(RATINGS), st.sampled_from(times))
    events = [(user, *draw(event)) for user in users for _ in range(draw(st.integers(0, 7)))]  # 0: a user without events
    events += draw(st.lists(st.sampled_from(events), max_size=5)) if events else []  # exact duplicate events
    return draw(st.permutations(events))  # any input order: time ties are broken by it


def write(events: list[tuple], path, fmt: str) -> None:
    frame = pl.DataFrame(
        {
            "user_id": [e[0] for e in events],
            "item_id": [e[1] for e in events],
            "rating": [e[2] for e in events],
            "timestamp": [e[3] for e in events],
        },
        strict=False,
    )
    frame.write_parquet(path) if fmt == "parquet" else frame.write_csv(path)


def reference_leave_last_out(raw: pl.DataFrame) -> dict:
    """Per user (original id): events in order (item, positive) without exact duplicates, the last one held out."""
    seen_keys, by_user = set(), {}
    for row in raw.iter_rows(named=True):
        key = (row["user"], row["item"], row["feedback"], row["time"])
        if key in seen_keys:
            continue
        seen_keys.add(key)
        by_user.setdefault(row["user"], []).append((row["time"], row["row"], row["item"], row["feedback"] >= THRESHOLD))
    return {user: [(item, positive) for _, _, item, positive in sorted(events)] for user, events in by_user.items()}


def left_padded(values: list, length: int) -> list:
    values = values[-length:]
    return [None] * (length - len(values)) + values


def decoded(data: FeedbackDataModule, codes: torch.Tensor) -> list:
    """Original item ids of a row of item codes; padding (code 0) becomes None (0 may be an original id)."""
    ids = data.split.item_ids
    return [ids[int(code) - 1] if code > 0 else None for code in codes]


def check_eval_users(data: FeedbackDataModule, sequences, reference: dict | None) -> None:
    rows = sequences.take(torch.arange(len(sequences)))  # every user's row, as a batch holds them
    users = data.split.user_ids.gather(pl.Series(rows["user"].tolist(), dtype=pl.Int64)).to_list()
    assert len(set(users)) == len(users)  # each user once
    for row, user in enumerate(users):
        target = decoded(data, rows["target"][row : row + 1])[0]
        history_positives = [item for item in decoded(data, rows["positives"][row]) if item is not None]
        seen = {item for item in decoded(data, rows["seen"][row]) if item is not None}
        if reference is None:
            continue
        events = reference[user]
        assert (target, bool(rows["target_positive"][row])) == events[-1]  # the last event (time, then input row)
        assert history_positives == [item for item, positive in events[:-1] if positive][-MAX_LEN:]
        assert seen == {item for item, _ in events[:-1]}


def check_split(data: FeedbackDataModule, raw: pl.DataFrame) -> None:
    validation, test = data.validation_sequences, data.test_sequences
    assert not set(validation.user.tolist()) & set(test.user.tolist())
    assert bool(validation.target_positive.all())
    reference = reference_leave_last_out(raw) if data.split_name == "leave_last_out" else None
    check_eval_users(data, validation, reference)
    check_eval_users(data, test, reference)
    if reference is None:
        return
    assert set(data.split.item_ids.to_list()) == set(raw["item"].to_list())
    assert len(validation) + len(test) <= len(reference) and len(test) == len(reference) - len(reference) // 2
    # training: every user's events but the last, the newest L + 1 of each kind; users with a next item to predict
    expected = []
    for events in reference.values():
        train = events[:-1]
        if len(train) >= 2:
            expected.append(
                (
                    tuple(left_padded([item for item, positive in train if positive], MAX_LEN + 1)),
                    tuple(left_padded([item for item, positive in train if not positive], MAX_LEN + 1)),
                    tuple(left_padded([item for item, _ in train], MAX_LEN + 1)),
                )
            )
    sequences = data.train_sequences
    actual = [
        (tuple(decoded(data, sequences.positives[row])), tuple(decoded(data, sequences.negatives[row])), tuple(decoded(data, sequences.history[row])))
        for row in range(len(sequences))
    ]
    key = lambda row: tuple(map(repr, row))  # noqa: E731  (ids of one column share a type, but sort ints and strings alike)
    assert sorted(actual, key=key) == sorted(expected, key=key)


def check_model(data: FeedbackDataModule, model_kwargs: dict) -> None:
    torch.manual_seed(0)
    model = NegSeqModule(data.num_items, data.num_train_items, max_len=MAX_LEN, dim=8, **model_kwargs)
    for batch in data.train_dataloader():
        terms = model.loss_terms(batch)
        assert all(torch.isfinite(value) for value in terms.values()), terms
        terms["loss"].backward()
    model.eval()
    with torch.no_grad():
        for stage, loader, sequences in (("val", data.val_dataloader(), data.validation_sequences), ("test", data.test_dataloader(), data.test_sequences)):
            for batch in loader:
                ranks, _, _ = model.rank_batch(batch)
                assert bool(((ranks >= 1) & (ranks <= data.num_items)).logical_or(ranks == math.inf).all())
                model._shared_eval_step(batch, stage)
            metrics = model.metrics[stage]
            hr = metrics["hr@10"].compute()
            assert int(metrics["hr@10"].n_pos + metrics["hr@10"].n_neg) == len(sequences)
            for name, count in (("pos", metrics["hr@10"].n_pos), ("neg", metrics["hr@10"].n_neg)):  # a group with no user: NaN
                assert 0.0 <= float(hr[name]) <= 1.0 if count else math.isnan(hr[name])
            # items seen only as held-out targets can be recommended too: coverage can pass 1
            assert 0.0 <= float(metrics["coverage@10"].compute()) <= data.num_items / data.num_train_items + 1e-6
        predictions = [model.predict_step(batch, index) for index, batch in enumerate(data.predict_dataloader())]
    recommendations = recommendations_frame(predictions, data)
    test = data.test_sequences.take(torch.arange(len(data.test_sequences)))
    seen_by_user = {int(user): {int(item) for item in row if item > 0} for user, row in zip(test["user"], test["seen"])}
    codes = dict(zip(data.split.item_ids.to_list(), range(1, data.num_items + 1)))
    users = dict(zip(data.split.user_ids.to_list(), range(len(data.split.user_ids))))
    for row in recommendations.iter_rows(named=True):
        assert codes[row["item_id"]] not in seen_by_user[users[row["user_id"]]]  # never an item the user already had
        assert 1 <= row["rank"] <= 10


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    events=logs(),
    fmt=st.sampled_from(["csv", "parquet"]),
    split=st.sampled_from(["leave_last_out", "leave_last_out", "temporal"]),
    model_kwargs=st.sampled_from([{}, {"family": "whole_history", "alpha": 0.0, "beta": 0.25, "cosine": True, "temperature": 0.1}]),
)
def test_random_logs_give_a_valid_run_or_a_documented_error(tmp_path_factory, events, fmt, split, model_kwargs):
    path = tmp_path_factory.mktemp("log") / f"log.{fmt}"
    write(events, path, fmt)
    data = FeedbackDataModule(path=str(path), threshold=THRESHOLD, split=split, max_len=MAX_LEN, min_item_users=1, min_user_items=1, batch_size=4, eval_batch_size=3)
    try:
        raw = read_log(path)
        for stage in ("fit", "test"):
            data.setup(stage)
        data.num_items, data.num_train_items
    except NegSeqError as error:  # the documented way to refuse a log: one line naming the file
        event(f"refused: {type(error).__name__}: {str(error).split(': ', 1)[-1][:40]}")
        assert str(path) in str(error) or split != "leave_last_out", error
        assert "\n" not in str(error).strip() or "Consider" in str(error), error
        return
    check_split(data, raw)
    check_model(data, model_kwargs)
    event(f"valid run ({split})")


# -- a few whole runs through the command line --

FAST = ["--model.dim", "8", "--data.max_len", "3", "--data.min_item_users", "1", "--data.min_user_items", "1", "--trainer.max_epochs", "1",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false", "--trainer.logger", "false"]


def cli_fit(tmp_path, frame: pl.DataFrame, name: str = "log.parquet"):
    path = tmp_path / name
    frame.write_parquet(path) if name.endswith(".parquet") else frame.write_csv(path)
    run_dir = tmp_path / "run"
    return path, run_dir, ["--data.path", str(path), "--run_dir", str(run_dir), *FAST]


def test_cli_run_keeps_unicode_users_and_huge_item_ids(tmp_path):
    rng = np.random.default_rng(0)
    users = ["é", "😀", "a,b", 'q"uote', "", "\u202e", "long-" * 20, "日本"]
    items = [INT64_MAX, -(2**63), 0, 1, 10**18, 42]
    rows = [(user, int(rng.choice(items)), float(rng.integers(1, 6)), 5) for user in users for _ in range(6)]  # equal timestamps
    rows += rows[:7]  # exact duplicates
    frame = pl.DataFrame(rows, schema=["user_id", "item_id", "rating", "timestamp"], orient="row")
    path, run_dir, args = cli_fit(tmp_path, frame)
    metrics = fit_main(args)
    assert {p.name for p in run_dir.iterdir()} >= {"config.yaml", "history.jsonl", "metrics.json", "recommendations.parquet"}
    recommendations = pl.read_parquet(run_dir / "recommendations.parquet")
    assert recommendations.schema["user_id"] == pl.String and recommendations.schema["item_id"] == pl.Int64
    assert set(recommendations["user_id"]) <= set(users) and set(recommendations["item_id"]) <= set(items)
    assert metrics["test/n_users_pos"] + metrics["test/n_users_neg"] == len(users) - len(users) // 2


def test_cli_run_on_a_one_item_catalogue(tmp_path):
    """Every user only ever rated item 'é' (several times): the target is always already seen, so every user is a miss."""
    rows = [(f"u{user}", "é", float(rating), step) for user in range(6) for step, rating in enumerate([5, 2, 4])]
    path, run_dir, args = cli_fit(tmp_path, pl.DataFrame(rows, schema=["user_id", "item_id", "rating", "timestamp"], orient="row"), "log.csv")
    metrics = fit_main(args)
    assert metrics["test/hr_p@10"] == 0.0 and metrics["test/coverage@10"] == 0.0
    assert metrics["test/n_users_neg"] == 0 and metrics["test/hr_n@10"] is None and metrics["test/delta_hr@10"] is None  # no user: no number
    assert pl.read_parquet(run_dir / "recommendations.parquet").height == 0  # nothing left to recommend
    assert json.loads((run_dir / "metrics.json").read_text()) == metrics


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([("a", 2**64 - 1, 5.0, 1)] * 3, "beyond the 64-bit signed range"),
        ([("a", 1, 5.0, 1), ("b", 2, 5.0, 2), ("c", 1, 5.0, 3)], "leaves no training events"),
        ([("a", 1, 5.0, 1), ("a", 2, 5.0, 2), ("b", 1, 5.0, 1), ("b", 2, 5.0, 3)], "no user has two training events"),
        ([("a", 1, 1.0, 1), ("a", 2, 2.0, 2)], "no positive events"),
    ],
)
def test_cli_stops_on_unusable_logs_with_one_line(tmp_path, capsys, rows, message):
    frame = pl.DataFrame(rows, schema=["user_id", "item_id", "rating", "timestamp"], orient="row", schema_overrides={"item_id": pl.UInt64})
    path, run_dir, args = cli_fit(tmp_path, frame)
    with pytest.raises(SystemExit) as stopped:
        run_cli(fit_main, args)
    assert stopped.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"error: {path}") and message in error, error
    assert not (run_dir / "metrics.json").exists()


@pytest.mark.parametrize(
    ("setting", "message"),
    [(["--model.dropout", "1.0"], "`dropout` must be in [0, 1), got 1.0"), (["--model.heads", "3"], "`dim` (8) must be divisible by `heads` (3)")],
)
def test_cli_stops_on_bad_encoder_settings_with_one_line(tmp_path, capsys, tiny_log, setting, message):
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as stopped:
        run_cli(fit_main, ["--data.path", tiny_log, "--run_dir", str(run_dir), *FAST, *setting])
    assert stopped.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"error: {message}"
    assert not (run_dir / "metrics.json").exists()


def test_errors_are_negseq_errors():
    assert issubclass(DataError, NegSeqError)
