"""The paper's datasets: each loader on a committed fixture in the exact raw format (tests/data/fixtures/), detection, defaults."""

from __future__ import annotations

import gzip
import logging
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest

from negseq.data import FeedbackDataModule
from negseq.data.formats import FORMATS, detect_format
from negseq.errors import DataError
from tests.oracle import read_log

FIXTURES = Path(__file__).parent / "fixtures"
ML_1M = FIXTURES / "ml-1m" / "ratings.dat"
ML_20M = FIXTURES / "ml-20m" / "ratings.csv"
AMAZON_2018 = FIXTURES / "amazon" / "Toys_and_Games_5.json"
AMAZON_2014 = FIXTURES / "amazon" / "reviews_Toys_and_Games_5.json.gz"
KION = FIXTURES / "kion" / "interactions.csv"
ZVUK = FIXTURES / "zvuk" / "zvuk-interactions.parquet"


def events(frame: pl.DataFrame) -> list[tuple]:
    return frame.select("user", "item", "feedback", "time").rows()


def utc(*args) -> int:
    return int(datetime(*args, tzinfo=timezone.utc).timestamp())


@pytest.mark.parametrize(
    ("path", "fmt"),
    [(ML_1M, "movielens"), (ML_20M, "movielens"), (AMAZON_2018, "amazon"), (AMAZON_2014, "amazon"), (KION, "kion"), (ZVUK, "zvuk")],
    ids=lambda value: value if isinstance(value, str) else value.parent.name + "/" + value.name,
)
def test_format_detected_from_the_published_file_name(path, fmt):
    assert detect_format(path) == fmt


def test_interactions_csv_without_kion_columns_is_a_generic_csv(tmp_path):
    path = tmp_path / "interactions.csv"
    path.write_text("user_id,item_id,rating,timestamp\n1,2,4,10\n")
    assert detect_format(path) == "csv"
    assert events(read_log(path)) == [(1, 2, 4.0, 10)]


def test_format_thresholds():
    assert {name: fmt.threshold for name, fmt in FORMATS.items()} == {
        "csv": 4.0, "tsv": 4.0, "parquet": 4.0, "movielens": 4.0, "amazon": 5.0, "kion": 50.0, "zvuk": 30.0,
    }


# -- MovieLens --


def test_movielens_1m_ratings_dat():
    frame = read_log(ML_1M)
    raw = [tuple(int(v) for v in line.split("::")) for line in ML_1M.read_text().splitlines()]
    assert frame.height == len(raw) == 26
    expected = sorted(((u, i, float(r), t, row) for row, (u, i, r, t) in enumerate(raw)), key=lambda e: (e[0], e[3], e[4]))
    assert frame.select("user", "item", "feedback", "time", "row").rows() == expected
    # user 4 rated 3105 and 1193 in the same second: input order breaks the tie
    assert frame.filter(pl.col("time") == 978294199)["item"].to_list() == [3105, 1193]


def test_movielens_20m_ratings_csv_half_stars():
    frame = read_log(ML_20M)
    assert frame.height == 20
    assert frame.schema["feedback"] == pl.Float64
    assert sorted(set(frame["feedback"].to_list())) == [0.5, 1.0, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0]
    assert events(frame.filter(pl.col("user") == 1))[0] == (1, 112, 3.5, 1094785740)  # the earliest of user 1, though the 6th line


@pytest.mark.parametrize("path", [ML_1M, ML_20M], ids=["ml-1m", "ml-20m"])
def test_movielens_default_threshold_is_four(path):
    data = FeedbackDataModule(path=str(path), threshold=None, min_item_users=1, min_user_items=1)
    ratings = read_log(path)
    last = ratings.group_by("user").agg(pl.col("row").last())["row"]  # read_log's frame is in event order
    train = ratings.filter(~pl.col("row").is_in(last.implode()))
    assert data.split.train["positive"].to_list() == (train["feedback"] >= 4).to_list()
    assert data.split.train["positive"].to_list() == FeedbackDataModule(path=str(path), min_item_users=1, min_user_items=1).split.train["positive"].to_list()


# -- Amazon --


AMAZON_EVENTS = [
    ("A1VXOAVRGKGEAK", "0020232233", 5.0, 1352419200),
    ("A1VXOAVRGKGEAK", "B00000DMCE", 4.0, 1385942400),
    ("A1VXOAVRGKGEAK", "B00000IZKX", 2.0, 1392422400),
    ("A2U6FE1Y2ZX3TL", "0020232233", 5.0, 1376438400),
    ("A2U6FE1Y2ZX3TL", "B00000IZKX", 5.0, 1376438400),
    ("A2U6FE1Y2ZX3TL", "B000038ABH", 3.0, 1393027200),
    ("A2U6FE1Y2ZX3TL", "B00000DMCE", 1.0, 1400112000),
    ("A3K1SPX4K0F2S8", "B00000DMCE", 3.0, 1330560000),
    ("A3K1SPX4K0F2S8", "B000038ABH", 5.0, 1331510400),
    ("A3K1SPX4K0F2S8", "0020232233", 2.0, 1331510400),
    ("AN0N05A9LIJEQ", "B000038ABH", 5.0, 1363046400),
    ("AN0N05A9LIJEQ", "0020232233", 4.0, 1364342400),
    ("AN0N05A9LIJEQ", "B00000IZKX", 5.0, 1370995200),
]


@pytest.mark.parametrize("path", [AMAZON_2018, AMAZON_2014], ids=["2018-plain", "2014-gzipped"])
def test_amazon_reviews(path):
    frame = read_log(path)
    assert frame.schema["user"] == pl.String and frame.schema["item"] == pl.String  # digit-only ASINs keep their zeros
    assert events(frame) == AMAZON_EVENTS


def test_amazon_default_threshold_is_five():
    data = FeedbackDataModule(path=str(AMAZON_2018), threshold=None, min_item_users=1, min_user_items=1, max_len=5)
    train = data.split.train
    # train = all but each reviewer's last review; 4.0 counts as negative at the default threshold 5
    expected = [rating == 5.0 for user in sorted({e[0] for e in AMAZON_EVENTS}) for *_, rating, _ in [e for e in AMAZON_EVENTS if e[0] == user][:-1]]
    assert train["positive"].to_list() == expected
    assert FeedbackDataModule(path=str(AMAZON_2018), threshold=4.0, min_item_users=1, min_user_items=1).split.train["positive"].sum() > sum(expected)


def test_amazon_column_override_reads_another_field(tmp_path):
    path = tmp_path / "reviews.json"
    path.write_text('{"reviewerID": "a", "asin": "x", "overall": 4.0, "unixReviewTime": 5, "helpful_votes": 3}\n')
    assert events(read_log(path, feedback_col="helpful_votes")) == [("a", "x", 3.0, 5)]


def test_amazon_missing_field(tmp_path):
    path = tmp_path / "reviews.json"
    path.write_text('{"reviewerID": "a", "asin": "x", "rating": 4.0, "unixReviewTime": 5}\n')
    expected = f"{path}: missing feedback column 'overall'; the first line has fields ['reviewerID', 'asin', 'rating', 'unixReviewTime'] (set --data.feedback_col)"
    with pytest.raises(DataError, match=re.escape(expected)):
        read_log(path)


def test_amazon_loose_json_is_named(tmp_path):
    # the old non-5-core Amazon dumps were Python literals, not JSON
    path = tmp_path / "reviews.json"
    path.write_text("{'reviewerID': 'a', 'asin': 'x', 'overall': 4.0, 'unixReviewTime': 5}\n")
    with pytest.raises(DataError, match=re.escape(f"{path}: line 1 is not JSON (")):
        read_log(path)


# -- Kion --


def test_kion_interactions(caplog):
    with caplog.at_level(logging.INFO, logger="negseq"):
        frame = read_log(KION)
    assert f"{KION}: dropped 1 events without watched_pct" in caplog.text
    assert frame.height == 15
    assert events(frame.filter(pl.col("user") == 176549)) == [
        (176549, 7107, 0.0, utc(2021, 5, 9)),
        (176549, 9506, 72.0, utc(2021, 5, 11)),
        (176549, 1659, 100.0, utc(2021, 5, 29)),
        (176549, 7638, 45.0, utc(2021, 7, 5)),
    ]
    # two titles finished on the same day: the file order breaks the tie
    assert frame.filter((pl.col("user") == 864613) & (pl.col("time") == utc(2021, 7, 5)))["item"].to_list() == [7638, 4151]


def test_kion_default_threshold_is_half_watched():
    data = FeedbackDataModule(path=str(KION), threshold=None, min_item_users=1, min_user_items=1)
    watched = read_log(KION)
    last = watched.group_by("user").agg(pl.col("row").last())["row"]
    train_watched = watched.filter(~pl.col("row").is_in(last.implode()))
    assert data.split.train["positive"].to_list() == (train_watched["feedback"] >= 50).to_list()


# -- Zvuk --


def test_zvuk_plays_summed_within_a_session():
    frame = read_log(ZVUK)
    at = lambda *t: utc(2023, *t)  # noqa: E731
    assert events(frame) == [
        (1, 200, 36.0, at(4, 1, 18, 0, 5)),  # 12 + 15 + 9 s in session 10, at its first play
        (1, 300, 185.0, at(4, 1, 18, 0, 20)),
        (1, 400, 7.0, at(4, 1, 18, 4, 0)),
        (1, 200, 5.0, at(4, 2, 9, 30, 0)),  # the same track in the next session: its own event
        (1, 500, 240.0, at(4, 2, 9, 30, 7)),
        (2, 300, 30.0, at(4, 1, 12, 0, 0)),  # 29 + 1: exactly the threshold once summed
        (2, 400, 160.0, at(4, 1, 12, 1, 0)),
        (2, 500, 3.0, at(4, 3, 8, 0, 0)),
        (3, 500, 200.0, at(4, 2, 22, 15, 0)),
        (3, 200, 0.0, at(4, 2, 22, 18, 20)),
        (3, 400, 31.0, at(4, 2, 22, 18, 21)),
    ]


def test_zvuk_default_threshold_is_thirty_seconds():
    data = FeedbackDataModule(path=str(ZVUK), threshold=None, min_item_users=1, min_user_items=1)
    # train: all but each user's last event
    assert data.split.train.select("item", "positive").rows() == [
        (1, True), (2, True), (3, False), (1, False),  # user 1: 200 (36 s), 300, 400 (7 s), 200 (5 s)
        (2, True), (3, True),  # user 2: 300 (30 s), 400
        (4, True), (1, False),  # user 3: 500, 200 (0 s)
    ]


def test_zvuk_without_session_column(tmp_path):
    path = tmp_path / "zvuk-interactions.parquet"
    pl.read_parquet(ZVUK).drop("session_id").write_parquet(path)
    with pytest.raises(DataError, match=re.escape(f"{path}: missing session column 'session_id'; the file has columns ['user_id', 'datetime', 'track_id', 'play_duration']")):
        read_log(path)


# -- format defaults through the data module --


def test_movielens_threshold_on_another_format_is_warned(caplog):
    with caplog.at_level(logging.WARNING, logger="negseq"):
        FeedbackDataModule(path=str(ZVUK), min_item_users=1, min_user_items=1).split
    assert "threshold 4.0 (MovieLens' rating scale) on a zvuk log, whose usual threshold is 30.0" in caplog.text


def test_explicit_format_for_a_renamed_file(tmp_path):
    path = tmp_path / "toys.jsonl.gz"
    path.write_bytes(gzip.compress(AMAZON_2018.read_bytes()))
    assert events(read_log(path)) == AMAZON_EVENTS
    renamed = tmp_path / "plays.parquet"
    shutil.copy(ZVUK, renamed)
    assert read_log(renamed, format="zvuk").height == 11
