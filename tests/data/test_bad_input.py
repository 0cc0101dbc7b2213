"""Bad input: one clear error naming the file, the column and what was expected; from the CLI, exit status 2 and no results.

The messages of most cases are checked in test_io.py (read_log); here the cases that had no test
(truncated gzip, mixed-type ids, the CSV type guess) and every case once through the command line.
"""

from __future__ import annotations

import gzip
import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from negseq.errors import DataError, run_cli
from negseq.fit import main as fit_main
from tests.oracle import read_log

FIXTURES = Path(__file__).parent / "fixtures"
HEADER = "user_id,item_id,rating,timestamp\n"
pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI.s args parameter")
RESULT_FILES = ("metrics.json", "recommendations.parquet", "history.jsonl", "best.ckpt", "last.ckpt")


def truncated(tmp_path: Path, name: str, text: bytes) -> Path:
    data = gzip.compress(text, mtime=0)
    path = tmp_path / name
    path.write_bytes(data[: len(data) // 2])
    return path


TRUNCATED = "the gzip data ends early (the file is truncated, e.g. an interrupted download); expected a complete .gz file: download it again"


# -- truncated gzip --


def test_truncated_gzip_csv(tmp_path):
    text = (HEADER + "".join(f"{i % 50},{i % 70},4,{i}\n" for i in range(5000))).encode()
    path = truncated(tmp_path, "log.csv.gz", text)
    with pytest.raises(DataError, match=re.escape(f"{path}: {TRUNCATED}")):
        read_log(path)


def test_truncated_gzip_movielens_dat(tmp_path):
    path = truncated(tmp_path, "ratings.dat.gz", (FIXTURES / "ml-1m" / "ratings.dat").read_bytes() * 20)
    with pytest.raises(DataError, match=re.escape(f"{path}: {TRUNCATED}")):
        read_log(path)


def test_truncated_gzip_amazon(tmp_path):
    path = tmp_path / "reviews_Toys_and_Games_5.json.gz"
    data = (FIXTURES / "amazon" / "reviews_Toys_and_Games_5.json.gz").read_bytes()
    path.write_bytes(data[:-12])  # the end of the deflate stream and the gzip trailer are missing
    with pytest.raises(DataError, match=re.escape(f"{path}: {TRUNCATED}")):
        read_log(path)


def test_gz_name_without_gzip_data(tmp_path):
    path = tmp_path / "log.csv.gz"
    path.write_text(HEADER + "1,2,4,10\n")
    with pytest.raises(DataError, match=re.escape(f"{path}: is not a valid gzip file (")):
        read_log(path)


# -- mixed-type ids --


def test_mixed_json_id_types(tmp_path):
    path = tmp_path / "reviews.json"
    path.write_text(
        '{"reviewerID": "A1", "asin": "B01", "overall": 5.0, "unixReviewTime": 1}\n'
        '{"reviewerID": "A2", "asin": "B01", "overall": 4.0, "unixReviewTime": 2}\n'
        '{"reviewerID": 12345, "asin": "B02", "overall": 3.0, "unixReviewTime": 3}\n'
    )
    expected = (
        f"{path}: user column 'reviewerID' mixes JSON strings and numbers (line 1 has a string, line 3 the number 12345); "
        "expected one type for all ids"
    )
    with pytest.raises(DataError, match=re.escape(expected)):
        read_log(path)


def test_mixed_json_feedback_types(tmp_path):
    path = tmp_path / "reviews.json"
    path.write_text('{"reviewerID": "A1", "asin": "B01", "overall": 5.0, "unixReviewTime": 1}\n{"reviewerID": "A2", "asin": "B01", "overall": "five", "unixReviewTime": 2}\n')
    expected = f"{path}: feedback column 'overall' mixes JSON numbers and strings (line 1 has a number, line 2 the string 'five'); expected one type for all values"
    with pytest.raises(DataError, match=re.escape(expected)):
        read_log(path)


def test_csv_ids_turning_to_words_late_are_string_ids(tmp_path):
    # text files have no id types: a word after 12,000 numeric ids makes every id a string, as a word in the first row would
    path = tmp_path / "log.csv"
    path.write_text(HEADER + "".join(f"{i},{i},4,{i}\n" for i in range(12_000)) + "alice,5,4,7\n")
    frame = read_log(path)
    assert frame.schema["user"] == pl.String and frame.schema["item"] == pl.Int64
    assert frame.filter(pl.col("row") == 12_000)["user"].to_list() == ["alice"]
    assert frame.filter(pl.col("row") == 3)["user"].to_list() == ["3"]


# -- every case through the command line: one line, exit status 2, nothing that looks like a result --


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def presplit_dir(root: Path, test_user: str = "3", drop: str | None = None) -> Path:
    directory = root / "split"
    directory.mkdir()
    train = pl.DataFrame({"user_id": [1, 1, 2, 2], "item_id": [10, 20, 20, 10], "rating": [5.0, 2, 4, 5], "timestamp": [1, 2, 3, 4]})
    train.write_parquet(directory / "train.parquet")
    train.write_parquet(directory / "validation.parquet")
    pl.DataFrame({"user_id": [test_user], "item_id": [10], "rating": [4.0], "timestamp": [9]}).write_parquet(directory / "test.parquet")
    if drop:
        (directory / drop).unlink()
    return directory


def case_args(case: str, tmp_path: Path) -> tuple[list[str], str]:
    """CLI arguments for one bad input and the start of the error line expected."""
    log = tmp_path / "log.csv"
    if case == "unknown format":
        path = write(log, HEADER + "1,2,4,10\n")
        return ["--data.path", str(path), "--data.format", "xlsx"], f"error: {path}: unknown format 'xlsx'; expected one of ['auto', 'amazon'"
    if case == "missing column":
        path = write(log, "user_id,item_id,stars,timestamp\n1,2,4,10\n")
        return ["--data.path", str(path)], f"error: {path}: missing feedback column 'rating'; the file has columns ['user_id', 'item_id', 'stars', 'timestamp'] (set --data.feedback_col)"
    if case == "non-numeric feedback":
        path = write(log, HEADER + "1,2,4,10\n1,3,good,11\n")
        return ["--data.path", str(path)], f"error: {path}: feedback column 'rating' has type String (e.g. 'good' at row 1); expected numbers"
    if case == "unknown time strings":
        path = write(log, HEADER + "1,2,4,yesterday\n")
        return ["--data.path", str(path)], f"error: {path}: time column 'timestamp' holds strings that are not ISO dates or times (e.g. 'yesterday' at row 0)"
    if case == "truncated gzip":
        path = truncated(tmp_path, "log.csv.gz", (HEADER + "".join(f"{i},{i},4,{i}\n" for i in range(5000))).encode())
        return ["--data.path", str(path)], f"error: {path}: {TRUNCATED}"
    if case == "all negative":
        path = write(log, HEADER + "".join(f"{u},{i},2,{10 * u + i}\n" for u in range(8) for i in range(8)))
        return ["--data.path", str(path)], f"error: {path}: no positive events: every feedback value is below the threshold 4.0 (max 2.0); lower --data.threshold"
    if case == "presplit missing file":
        directory = presplit_dir(tmp_path, drop="validation.parquet")
        return ["--data.path", str(directory), "--data.split", "presplit"], f"error: {directory}: presplit directory lacks ['validation.parquet']"
    if case == "mixed id types":
        directory = presplit_dir(tmp_path, test_user="u3")
        return ["--data.path", str(directory), "--data.split", "presplit"], (
            f"error: {directory}: presplit: user ids have different types across the files "
            "{'train': 'Int64', 'validation': 'Int64', 'test': 'String'}; expected one id type in all three"
        )
    raise ValueError(case)


CASES = ["unknown format", "missing column", "non-numeric feedback", "unknown time strings", "truncated gzip", "all negative", "presplit missing file", "mixed id types"]
QUIET = ["--trainer.logger", "false", "--trainer.enable_progress_bar", "false"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_through_the_cli(case, tmp_path, capsys):
    args, expected = case_args(case, tmp_path)
    runs = tmp_path / "runs"
    with pytest.raises(SystemExit) as exit:
        run_cli(fit_main, [*args, "--trainer.default_root_dir", str(runs), *QUIET])
    assert exit.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(expected), errors
    assert not [p for p in runs.rglob("*") if p.name in RESULT_FILES] if runs.exists() else True


@pytest.mark.slow
def test_all_negative_log_from_the_command_line(tmp_path):
    """A real process: exit status 2, the one error line last on stderr, no traceback, no metrics.json."""
    args, expected = case_args("all negative", tmp_path)
    runs = tmp_path / "runs"
    result = subprocess.run(
        [sys.executable, "-m", "negseq.fit", *args, "--trainer.default_root_dir", str(runs), *QUIET], capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(expected)
    assert not list(runs.rglob("metrics.json")) and not list(runs.rglob("*.ckpt")) and not list(runs.rglob("recommendations.parquet"))
