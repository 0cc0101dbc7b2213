"""Fixtures shared by the data tests: hand-made logs in the readers' shape, and the embedded ml-latest-small."""

from __future__ import annotations

import polars as pl
import pytest

from negseq.data import splits
from negseq.data.datamodule import embedded_ratings
from negseq.data.formats import Columns
from tests.oracle import add_sign, read_log, standardize

STANDARD = Columns("user", "item", "feedback", "time")


@pytest.fixture
def signed_log():
    """``signed_log(rows, threshold=4.0)``: (user, item, feedback, time) tuples -> signed frame as the eager oracle gives it.

    ``row`` is the tuple's position in ``rows``, so tests can name events by their index.
    """

    def make(rows: list[tuple], threshold: float = 4.0) -> pl.DataFrame:
        raw = pl.DataFrame(rows, schema=["user", "item", "feedback", "time"], orient="row")
        return add_sign(standardize(raw, STANDARD, "hand-made"), threshold)

    return make


@pytest.fixture(scope="session")
def embedded_events() -> pl.DataFrame:
    """ml-latest-small, signed at rating >= 4, items with >= 5 users then users with >= 5 items."""
    path = embedded_ratings()
    return splits.filter_cores(add_sign(read_log(path), 4.0), 5, 5, path)


@pytest.fixture(scope="session")
def embedded_split(embedded_events) -> splits.Split:
    return splits.leave_last_out(embedded_events, seed=42)
