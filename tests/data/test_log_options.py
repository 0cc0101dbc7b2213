"""Reading options for the logs of issue #23: headerless text with named column positions, date strings, Boolean
feedback, empty timestamps; on small fixture files, and on the real logs of ../shared/data when they are there."""

from __future__ import annotations

import logging
import re
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from negseq.data import FeedbackDataModule, reading
from negseq.errors import DataError
from tests.oracle import read_log

SHARED = Path(__file__).parents[2] / ".." / "shared" / "data"
HEADERLESS = dict(has_header=False, user_col="column_1", item_col="column_2", feedback_col="column_3", time_col="column_4")
CIAO = dict(format="csv", has_header=False, user_col="column_1", item_col="column_2", feedback_col="column_5", time_col="column_6")
STEAM = dict(user_col="user_id", item_col="item_id", feedback_col="recommend", time_col="posted")


def day(text: str) -> int:
    return int(datetime.combine(date.fromisoformat(text), datetime.min.time(), tzinfo=timezone.utc).timestamp())


def test_a_headerless_tab_separated_log_with_its_column_positions_named(tmp_path):
    """ml-100k's ``u.data``: user, item, rating, unix time, tab-separated, no header."""
    path = tmp_path / "u.data"
    path.write_text("".join(f"{u}\t{i}\t{(u + i) % 5 + 1}\t{880000000 + 10 * u + i}\n" for u in range(1, 13) for i in range(1, 9)))
    frame = read_log(path, format="tsv", **HEADERLESS)  # and the streaming reader agrees
    assert frame.height == 96 and frame.row(0, named=True) == {"row": 0, "user": 1, "item": 1, "feedback": 3.0, "time": 880000011}
    data = FeedbackDataModule(path=str(path), format="tsv", **HEADERLESS, min_item_users=1, min_user_items=1, max_len=5, cache=False)
    assert data.num_items == 8 and data.catalog.reading["has_header"] is False
    with pytest.raises(DataError, match=re.escape(f"{path}: missing user column 'user_id'; the file has columns ['column_1', 'column_2', 'column_3', 'column_4']")):
        reading.read_events(path, format="tsv", has_header=False)
    with pytest.raises(DataError, match=re.escape(f"{path}: cannot tell the format from the file name")):
        reading.read_events(path, **HEADERLESS)


def test_a_headerless_comma_separated_log_with_date_strings(tmp_path):
    """ciaodvd's ``movie-ratings.txt``: userID, movieID, genreID, reviewID, rating, date (YYYY-MM-DD), comma, no header."""
    path = tmp_path / "movie-ratings.txt"  # .txt alone says tsv: the format (or the separator) is given
    path.write_text("1,10,1,1,5,2000-07-12\n1,11,1,2,2,2001-01-03\n2,10,1,3,4,1999-12-31\n")
    frame = read_log(path, **CIAO)
    assert frame.select("user", "item", "feedback", "time").rows() == [
        (1, 10, 5.0, day("2000-07-12")), (1, 11, 2.0, day("2001-01-03")), (2, 10, 4.0, day("1999-12-31"))
    ]
    by_separator = {**CIAO, "format": "tsv", "separator": ","}
    assert reading.read_events(path, **by_separator).decoded().equals(reading.read_events(path, **CIAO).decoded())
    with pytest.raises(DataError, match=re.escape(f"{path}: separator ';;'; expected one byte")):
        reading.read_events(path, **{**CIAO, "separator": ";;"})
    with pytest.raises(DataError, match=re.escape("has_header and separator apply to delimited text (['csv', 'tsv']), not to format 'movielens'")):
        reading.read_events(path, format="movielens", has_header=False)


def steam_log(tmp_path) -> Path:
    """steam-au's ``user_reviews.csv`` in small: string users, recommend true/false, ``posted`` empty for some reviews."""
    path = tmp_path / "user_reviews.csv"
    rows = [("u1", 10, "true", "2011-11-05"), ("u1", 11, "false", ""), ("u1", 12, "false", "2011-07-15"), ("js41637", 10, "true", "2014-06-24"),
            ("js41637", 12, "true", ""), ("js41637", 11, "false", "2014-06-20")]
    path.write_text("user_id,item_id,recommend,posted,last_edited\n" + "".join(f"{u},{i},{r},{p},\n" for u, i, r, p in rows))
    return path


def test_boolean_feedback_is_its_own_sign_whatever_the_threshold(tmp_path):
    path = steam_log(tmp_path)
    for threshold in (4.0, None, 0.5):
        events = reading.read_events(path, **STEAM, threshold=threshold, missing_time="drop").decoded()
        assert events.select("user", "item", "positive").rows() == [
            ("js41637", 11, False), ("js41637", 10, True), ("u1", 12, False), ("u1", 10, True)
        ]


def test_an_empty_timestamp_is_an_error_naming_file_column_and_count_unless_dropped(tmp_path, caplog):
    path = steam_log(tmp_path)
    expected = (f"{path}: time column 'posted' has 2 missing (null or NaN) values, first at row 1; expected a value in every row; "
                "or drop them with --data.missing_time drop")
    with pytest.raises(DataError, match=re.escape(expected)):
        reading.read_events(path, **STEAM)
    with pytest.raises(DataError, match=re.escape(expected)):
        FeedbackDataModule(path=str(path), **STEAM, cache=False).num_items
    with caplog.at_level(logging.INFO, logger="negseq"):
        events = reading.read_events(path, **STEAM, missing_time="drop")
    assert events.frame.height == 4 and f"{path}: dropped 2 events without a timestamp (posted)" in caplog.text
    with pytest.raises(DataError, match=re.escape("unknown missing_time 'row'; expected one of ['error', 'drop']")):
        FeedbackDataModule(path=str(path), missing_time="row")


# -- the real logs (not committed: licences), when ../shared/data has them --


def shared(relative: str) -> Path:
    path = SHARED / relative
    if not path.is_file():
        pytest.skip(f"{path} is not here")
    return path


def test_ml_100k_u_data():
    events = reading.read_events(shared("ml-100k/u.data"), format="tsv", **HEADERLESS)
    # the published 100,000 ratings of 943 users; this copy also opens with 3 rows of a user 0 (the 5-core filters drop them)
    assert events.frame.height >= 100_000 and events.user_ids.len() >= 943 and events.item_ids.len() == 1682


def test_ciaodvd_movie_ratings():
    events = reading.read_events(shared("ciaodvd/movie-ratings.txt"), **CIAO)
    assert events.frame.height <= 72_665 and events.frame["time"].min() >= day("1990-01-01")


def test_steam_au_user_reviews():
    path = shared("steam-au/user_reviews.csv")
    with pytest.raises(DataError, match=re.escape(f"{path}: time column 'posted' has 10091 missing")):
        reading.read_events(path, **STEAM)
    events = reading.read_events(path, **STEAM, missing_time="drop")
    assert events.frame.height <= 59_161 - 10_091 and 0 < (~events.frame["positive"]).mean() < 0.2
