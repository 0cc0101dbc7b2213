"""read_log: every reader ends in (row, user, item, feedback, time); bad input stops with a DataError naming file, column and expectation."""

from __future__ import annotations

import gzip
import logging
import re
from datetime import datetime, timezone

import numpy as np
import polars as pl
import pytest

from negseq.data.datamodule import embedded_ratings
from negseq.data.order import in_event_order
from negseq.errors import DataError
from tests.oracle import read_log

HEADER = "user_id,item_id,rating,timestamp\n"


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


def epoch(*args, tz=timezone.utc) -> int:
    return int(datetime(*args, tzinfo=tz).timestamp())


# -- bad input --


def test_missing_file_is_named(tmp_path):
    path = tmp_path / "nowhere.csv"
    with pytest.raises(DataError, match=re.escape(f"{path}: file not found")):
        read_log(path)


def test_zero_byte_file(tmp_path):
    path = write(tmp_path, "empty.csv", "")
    with pytest.raises(DataError, match=re.escape(f"{path}: the file is empty; expected a header and at least one event")):
        read_log(path)


def test_header_only_file(tmp_path):
    path = write(tmp_path, "header.csv", HEADER)
    with pytest.raises(DataError, match=re.escape(f"{path}: no events; expected at least one row")):
        read_log(path)


def test_missing_column_names_it_and_lists_the_file_columns(tmp_path):
    path = write(tmp_path, "log.csv", "user_id,item_id,rating,when\n1,2,4,10\n")
    expected = f"{path}: missing time column 'timestamp'; the file has columns ['user_id', 'item_id', 'rating', 'when'] (set --data.time_col)"
    with pytest.raises(DataError, match=re.escape(expected)):
        read_log(path)


def test_missing_column_respects_override(tmp_path):
    path = write(tmp_path, "log.csv", HEADER + "1,2,4,10\n")
    with pytest.raises(DataError, match=re.escape("missing user column 'uid'; the file has columns ['user_id', 'item_id', 'rating', 'timestamp']")):
        read_log(path, user_col="uid")


def test_string_feedback_rejected(tmp_path):
    path = write(tmp_path, "log.csv", HEADER + "1,2,good,10\n1,3,bad,11\n")
    with pytest.raises(DataError, match=re.escape(f"{path}: feedback column 'rating' has type String (e.g. 'good' at row 0); expected numbers")):
        read_log(path)


def test_non_numeric_feedback_after_many_numbers_names_the_value(tmp_path):
    # beyond the rows the CSV reader guesses types from: the whole file decides, and the message shows the word, not a number
    rows = "".join(f"{i},{i},4,{i}\n" for i in range(12_000))
    path = write(tmp_path, "log.csv", HEADER + rows + "7,8,great,9\n")
    with pytest.raises(DataError, match=re.escape(f"{path}: feedback column 'rating' has type String (e.g. 'great' at row 12000); expected numbers")):
        read_log(path)


def test_null_feedback_rejected_with_row(tmp_path):
    path = write(tmp_path, "log.csv", HEADER + "1,2,4,10\n1,3,,11\n1,4,,12\n")
    expected = f"{path}: feedback column 'rating' has 2 missing (null or NaN) values, first at row 1; expected a value in every row"
    with pytest.raises(DataError, match=re.escape(expected)):
        read_log(path)


def test_nan_feedback_rejected(tmp_path):
    path = tmp_path / "log.parquet"
    pl.DataFrame({"user_id": [1, 1, 2], "item_id": [2, 3, 2], "rating": [4.0, 3.0, float("nan")], "timestamp": [1, 2, 3]}).write_parquet(path)
    expected = f"{path}: feedback column 'rating' has 1 missing (null or NaN) values, first at row 2; expected a value in every row"
    with pytest.raises(DataError, match=re.escape(expected)):
        read_log(path)


def test_null_timestamp_rejected(tmp_path):
    path = write(tmp_path, "log.csv", HEADER + "1,2,4,10\n1,3,5,\n")
    expected = f"{path}: time column 'timestamp' has 1 missing (null or NaN) values, first at row 1; expected a value in every row"
    with pytest.raises(DataError, match=re.escape(expected)):
        read_log(path)


def test_null_user_rejected(tmp_path):
    path = write(tmp_path, "log.csv", HEADER + ",2,4,10\n1,3,5,11\n")
    with pytest.raises(DataError, match=re.escape(f"{path}: user column 'user_id' has 1 missing (null or NaN) values, first at row 0")):
        read_log(path)


@pytest.mark.parametrize("first", ["2020-01-01T00:00:00", "yesterday"])
def test_unparseable_time_strings_rejected(tmp_path, first):
    path = write(tmp_path, "log.csv", HEADER + f"1,2,4,{first}\n1,3,4,yesterday\n")
    row = 0 if first == "yesterday" else 1
    expected = (
        f"{path}: time column 'timestamp' holds strings that are not ISO dates or times (e.g. 'yesterday' at row {row}); "
        "expected numbers or ISO 8601 timestamps"
    )
    with pytest.raises(DataError, match=re.escape(expected)):
        read_log(path)


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ("2020-01-01T00:00:00", "2020-01-01T00:00:10", [epoch(2020, 1, 1), epoch(2020, 1, 1, 0, 0, 10)]),
        ("2020-01-01 00:00:00", "2021-06-15 12:30:00", [epoch(2020, 1, 1), epoch(2021, 6, 15, 12, 30)]),
        ("2020-01-01", "2020-01-02", [epoch(2020, 1, 1), epoch(2020, 1, 2)]),
        # offsets are honoured: both are the same instant
        ("2020-01-01T00:00:00Z", "2020-01-01T01:00:00+01:00", [epoch(2020, 1, 1), epoch(2020, 1, 1)]),
    ],
)
def test_iso_time_strings_become_epoch_seconds(tmp_path, first, second, expected):
    path = write(tmp_path, "log.csv", HEADER + f"1,2,4,{first}\n1,3,4,{second}\n")
    frame = read_log(path)
    assert frame.schema["time"] == pl.Int64
    assert frame["time"].to_list() == expected


def test_datetime_column_becomes_epoch_seconds(tmp_path):
    path = tmp_path / "log.parquet"
    stamps = pl.Series([datetime(2020, 1, 1), datetime(2020, 1, 2, 0, 0, 5)])
    pl.DataFrame({"user_id": [1, 1], "item_id": [2, 3], "rating": [4.0, 1.0], "timestamp": stamps}).write_parquet(path)
    assert read_log(path)["time"].to_list() == [epoch(2020, 1, 1), epoch(2020, 1, 2, 0, 0, 5)]


@pytest.mark.parametrize("column", ["user_id", "item_id"])
def test_float_ids_rejected(tmp_path, column):
    path = tmp_path / "log.parquet"
    columns = {"user_id": [1, 2], "item_id": [3, 4], "rating": [4.0, 5.0], "timestamp": [1, 2]}
    columns[column] = [1.5, 2.0]
    pl.DataFrame(columns).write_parquet(path)
    role = column.removesuffix("_id")
    with pytest.raises(DataError, match=re.escape(f"{path}: {role} column '{column}' has type Float64; expected integer or string ids")):
        read_log(path)


def test_unknown_format(tmp_path):
    path = write(tmp_path, "log.csv", HEADER + "1,2,4,10\n")
    expected = f"{path}: unknown format 'xlsx'; expected one of ['auto', 'amazon', 'csv', 'kion', 'movielens', 'parquet', 'tsv', 'zvuk']"
    with pytest.raises(DataError, match=re.escape(expected)):
        read_log(path, format="xlsx")


@pytest.mark.parametrize("name", ["ratings", "log.xlsx"])
def test_undetectable_format(tmp_path, name):
    path = write(tmp_path, name, HEADER + "1,2,4,10\n")
    expected = (
        f"{path}: cannot tell the format from the file name; pass --data.format, "
        "one of ['amazon', 'csv', 'kion', 'movielens', 'parquet', 'tsv', 'zvuk']"
    )
    with pytest.raises(DataError, match=re.escape(expected)):
        read_log(path)


def test_explicit_format_overrides_the_name(tmp_path):
    path = write(tmp_path, "log.json", HEADER + "1,2,4,10\n")
    assert read_log(path, format="csv")["item"].to_list() == [2]


def test_unreadable_file_is_a_data_error(tmp_path):
    path = tmp_path / "log.parquet"
    path.write_text("not parquet at all")
    with pytest.raises(DataError, match=re.escape(f"{path}: cannot be read as parquet")):
        read_log(path)


# -- what comes out --


def test_result_columns_and_types(tmp_path):
    path = write(tmp_path, "log.csv", HEADER + "7,70,4.5,100\n8,80,2,90\n")
    frame = read_log(path)
    assert frame.columns == ["row", "user", "item", "feedback", "time"]
    assert frame.rows() == [(0, 7, 70, 4.5, 100), (1, 8, 80, 2.0, 90)]
    assert frame.schema["feedback"] == pl.Float64
    assert frame.schema["time"] == pl.Int64


def test_column_overrides(tmp_path):
    path = write(tmp_path, "log.tsv", "who\twhat\tscore\twhen\tother\na\tx\t1\t5\tz\n")
    frame = read_log(path, user_col="who", item_col="what", feedback_col="score", time_col="when")
    assert frame.rows() == [(0, "a", "x", 1.0, 5)]


@pytest.mark.parametrize("name", ["log.csv", "log.csv.gz", "log.tsv", "log.txt", "log.parquet", "log.pq"])
def test_format_detected_from_extension(tmp_path, name):
    expected = pl.DataFrame({"user_id": [1, 2], "item_id": [10, 20], "rating": [4.0, 1.0], "timestamp": [5, 6]})
    path = tmp_path / name
    if ".parquet" in name or name.endswith(".pq"):
        expected.write_parquet(path)
    else:
        text = expected.write_csv(separator="," if ".csv" in name else "\t").encode()
        path.write_bytes(gzip.compress(text) if name.endswith(".gz") else text)
    assert read_log(path).select("user", "item", "feedback", "time").rows() == expected.rows()


def test_string_ids_are_kept(tmp_path):
    path = write(tmp_path, "log.csv", HEADER + "alice,tt0111161,5,10\nbob,tt0068646,3,11\n007,tt0111161,4,12\n")
    frame = read_log(path)
    assert frame.schema["user"] == pl.String and frame.schema["item"] == pl.String
    # in event order: users sorted as strings
    assert frame["user"].to_list() == ["007", "alice", "bob"]
    assert frame["item"].to_list() == ["tt0111161", "tt0111161", "tt0068646"]
    assert frame["row"].to_list() == [2, 0, 1]


def test_integer_ids_widen_to_int64(tmp_path):
    path = tmp_path / "log.parquet"
    pl.DataFrame(
        {"user_id": pl.Series([1, 2], dtype=pl.Int32), "item_id": pl.Series([3, 4], dtype=pl.UInt16), "rating": [4, 5], "timestamp": [1, 2]}
    ).write_parquet(path)
    frame = read_log(path)
    assert frame.schema["user"] == pl.Int64 and frame.schema["item"] == pl.Int64


def test_exact_duplicates_dropped_and_counted(tmp_path, caplog):
    path = write(
        tmp_path,
        "log.csv",
        HEADER
        + "1,2,4,10\n"  # row 0
        + "1,2,4,10\n"  # row 1: exact duplicate of row 0
        + "1,2,5,10\n"  # row 2: same event, other feedback: kept
        + "1,2,4,11\n"  # row 3: same event, other time: kept
        + "2,2,4,10\n"  # row 4: other user: kept
        + "1,2,4,10\n",  # row 5: duplicate of row 0 again
    )
    with caplog.at_level(logging.INFO, logger="negseq"):
        frame = read_log(path)
    assert frame["row"].to_list() == [0, 2, 3, 4]
    assert f"{path}: dropped 2 exact duplicate events" in caplog.text


def test_no_duplicate_message_without_duplicates(tmp_path, caplog):
    path = write(tmp_path, "log.csv", HEADER + "1,2,4,10\n1,2,4,11\n")
    with caplog.at_level(logging.INFO, logger="negseq"):
        read_log(path)
    assert "exact duplicate" not in caplog.text  # (the path itself holds the word)


def test_events_come_in_event_order_and_row_is_the_input_position(tmp_path):
    # times deliberately out of order: row is the position in the file, not a time rank
    path = write(tmp_path, "log.csv", HEADER + "3,1,4,300\n1,2,4,100\n2,3,4,200\n1,4,4,50\n1,5,4,100\n")
    frame = read_log(path)
    assert frame["user"].to_list() == [1, 1, 1, 2, 3]
    assert frame["time"].to_list() == [50, 100, 100, 200, 300]
    assert frame["row"].to_list() == [3, 1, 4, 2, 0]  # the time tie of user 1 keeps the input order


@pytest.mark.parametrize(("shuffle", "string_users"), [(False, False), (True, False), (True, True)])
def test_event_order_of_a_log_in_time_order_and_of_any_log(tmp_path, shuffle, string_users):
    # a log in time order takes the one-key sort, any other a packed (user, time) key, string ids two stable sorts:
    # all give (user, time, row), many time ties included
    rng = np.random.default_rng(0)
    users, times = rng.integers(0, 50, 2000), np.sort(rng.integers(0, 300, 2000))
    frame = pl.DataFrame({"user_id": users, "item_id": rng.integers(0, 99, 2000), "rating": 4.0, "timestamp": times})
    if string_users:
        frame = frame.with_columns(pl.format("u{}", "user_id").alias("user_id"))
    if shuffle:
        frame = frame.sample(fraction=1.0, shuffle=True, seed=1)
    path = tmp_path / "log.parquet"
    frame.write_parquet(path)
    result = read_log(path)
    expected = frame.with_row_index("row").unique(subset=["user_id", "item_id", "timestamp"], keep="first").sort("user_id", "timestamp", "row")
    assert result["row"].to_list() == expected["row"].to_list()
    assert in_event_order(result)


@pytest.mark.parametrize("compress", [False, True])
def test_movielens_dat_detected_by_name(tmp_path, compress):
    text = b"1::1193::5::978300760\n1::661::3::978302109\n2::1193::1::978298413\n"
    path = tmp_path / ("ratings.dat.gz" if compress else "ratings.dat")
    path.write_bytes(gzip.compress(text) if compress else text)
    frame = read_log(path)
    assert frame.rows() == [
        (0, 1, 1193, 5.0, 978300760),
        (1, 1, 661, 3.0, 978302109),
        (2, 2, 1193, 1.0, 978298413),
    ]


def test_movielens_csv_detected_by_name(tmp_path):
    path = write(tmp_path, "ratings.csv", "userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n")
    assert read_log(path).rows() == [(0, 1, 31, 2.5, 1260759144)]


def test_embedded_ratings():
    frame = read_log(embedded_ratings())
    assert frame.height == 100836
    assert frame["user"].n_unique() == 610
    assert sorted(frame["row"].to_list()) == list(range(100836))
    assert in_event_order(frame)
    assert frame.schema["user"] == pl.Int64 and frame.schema["time"] == pl.Int64
    assert frame["feedback"].min() == 0.5 and frame["feedback"].max() == 5.0
