"""The streaming reader gives the eager oracle's splits and tensors; event order; user sampling, from_frame and the prepared-data cache."""

from __future__ import annotations

import inspect
import os
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from negseq.data import FeedbackDataModule, reading, splits
from negseq.data.datamodule import embedded_ratings
from negseq.data.formats import FORMATS, resolve_format
from negseq.data.order import event_order
from negseq.data.sequences import EvalSequences, TrainSequences
from negseq.errors import DataError
from tests.oracle import read_signed

FIXTURES = Path(__file__).parent / "fixtures"
# files any format reads with its defaults; the study logs' fixtures need their config's reading options (test_configs
# reads them so, and test_log_options compares those options' streaming and eager reads)
STUDY_LOGS = ("ml-100k", "ciaodvd", "steam-au")
FIXTURE_FILES = sorted(path for path in FIXTURES.glob("*/*") if path.name != "README.md" and path.parent.name not in STUDY_LOGS)


def eager_split(path: Path, split: str, cores: int) -> splits.Split:
    """The eager oracle: the whole frame, signed, 5-core filtered and split with original ids."""
    events = read_signed(path, FORMATS[resolve_format(path)].threshold)
    return getattr(splits, split)(splits.filter_cores(events, cores, cores, path), 42, "positive")


def streamed_split(path: Path, split: str, cores: int, **kwargs) -> splits.Split:
    events = reading.read_events(path, threshold=None, **kwargs)
    return reading.filter_and_split(events, getattr(splits, split), 42, "positive", cores, cores, path)


def assert_same(streamed: splits.Split, eager: splits.Split, max_len: int = 5) -> None:
    assert streamed.item_ids.equals(eager.item_ids) and streamed.user_ids.equals(eager.user_ids)
    for name in ("train", "validation", "test"):
        ours, theirs = getattr(streamed, name), getattr(eager, name)
        columns = [column for column in theirs.columns if column != "row"]  # row: an order-equivalent tie-breaker
        assert ours.select(columns).cast({"user": pl.Int64, "item": pl.Int64, "time": pl.Int64}).rows() == theirs.select(columns).cast(
            {"user": pl.Int64, "item": pl.Int64, "time": pl.Int64}
        ).rows(), name
        build = TrainSequences.from_events if name == "train" else EvalSequences.from_events
        a, b = build(ours, max_len), build(theirs, max_len)
        for field in a.__dataclass_fields__:
            assert torch.equal(getattr(a, field), getattr(b, field)), (name, field)


@pytest.mark.parametrize("split", ["leave_last_out", "temporal"])
@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_streamed_split_and_tensors_equal_the_eager_path_on_every_fixture(path, split):
    assert_same(streamed_split(path, split, 1), eager_split(path, split, 1))


@pytest.mark.parametrize("split", ["leave_last_out", "temporal"])
def test_streamed_split_and_tensors_equal_the_eager_path_on_ml_latest_small(split):
    streamed = streamed_split(embedded_ratings(), split, 5)
    assert_same(streamed, eager_split(embedded_ratings(), split, 5), max_len=50)
    # and independently of both: item codes are the dense rank of the original ids that survived
    ratings = pl.read_csv(embedded_ratings())
    kept = streamed.item_ids.to_list()
    assert kept == sorted(kept) and set(kept) <= set(ratings["movieId"].to_list())
    assert streamed.train.height + streamed.validation.filter("is_target").height <= ratings.height


@pytest.mark.slow
@pytest.mark.parametrize("path", [embedded_ratings(), FIXTURES / "zvuk" / "zvuk-interactions.parquet"], ids=["ml-latest-small", "zvuk"])
def test_user_ranges_give_the_same_events_as_one_pass(path, monkeypatch):
    whole = streamed_split(path, "leave_last_out", 1)
    monkeypatch.setattr(reading, "PARTITION_EVENTS", 7)  # many ranges, the session sum inside each
    assert_same(streamed_split(path, "leave_last_out", 1), whole)


def test_event_order_is_a_stable_sort_by_user_then_time_on_random_ties():
    rng = np.random.default_rng(0)
    n = 5_000
    frame = pl.DataFrame({
        "user": rng.integers(0, 50, n).astype(np.uint32), "item": rng.integers(1, 9, n).astype(np.uint32),
        "feedback": rng.integers(1, 6, n).astype(np.int8), "time": rng.integers(0, 30, n).astype(np.int32),
        "row": np.arange(n, dtype=np.uint32),
    })
    expected = frame.sort("user", "time", maintain_order=True)  # polars' stable sort: the definition
    moved = frame.clone()
    assert event_order(moved, consume=True).equals(expected)
    assert moved.width == 0  # its columns were moved out, not copied
    assert event_order(frame).equals(expected) and frame.width == 5  # the caller's frame untouched without consume
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=1)
    assert event_order(shuffled).equals(shuffled.sort("user", "time", maintain_order=True))  # ties in the frame's order, not by row
    assert event_order(frame.head(0).vstack(frame), first_row=7).equals(expected.with_columns(pl.col("row") + 7))
    wide = frame.with_columns(time=pl.col("time").cast(pl.Int64) * 2**44)  # too wide to pack with the user: two sorts
    assert event_order(wide).equals(wide.sort("user", "time", maintain_order=True))
    by_time = wide.sort("time", maintain_order=True).with_columns(row=pl.int_range(n, dtype=pl.UInt32))  # a log in time order: one stable sort by user
    assert event_order(by_time).equals(by_time.sort("user", "time", maintain_order=True))
    strings = frame.with_columns(pl.col("user").cast(pl.String), time=pl.col("time").cast(pl.Float64))  # polars' sorts
    assert event_order(strings).equals(strings.sort("user", "time", maintain_order=True))


# -- sampling users at the scan --


def entries(root: Path) -> list[Path]:
    """The cache entries under ``root`` (each has a lock file beside it)."""
    return sorted(path for path in root.iterdir() if path.is_dir())


def users_of(data: FeedbackDataModule) -> set:
    return set(data.user_ids.to_list())


def test_sample_users_count_fraction_and_seed(tiny_log):
    def sampled(**kwargs) -> FeedbackDataModule:
        return FeedbackDataModule(path=tiny_log, min_item_users=1, min_user_items=1, cache=False, **kwargs)

    everyone = users_of(sampled())
    ten = users_of(sampled(sample_users=10, sample_seed=3))
    assert len(ten) == 10 and ten <= everyone
    assert ten == users_of(sampled(sample_users=10, sample_seed=3))  # deterministic
    assert ten != users_of(sampled(sample_users=10, sample_seed=4))
    half = users_of(sampled(sample_users=0.5, sample_seed=3))
    assert half <= everyone and 8 <= len(half) <= 32 and half == users_of(sampled(sample_users=0.5, sample_seed=3))
    # a sampled user keeps every event: train plus one held-out target per user is the user's whole log
    data = sampled(sample_users=10, sample_seed=3, validation_targets="all")
    kept = pl.read_csv(tiny_log).filter(pl.col("user_id").is_in(list(ten)))
    assert data.split.train.height + data.user_ids.len() == kept.height


def test_sample_users_bad_values(tiny_log):
    for value in (0, -3, 1.5, 0.0):
        with pytest.raises(DataError, match=r"sample_users=.*expected a count >= 1 or a fraction in \(0, 1\)"):
            FeedbackDataModule(path=tiny_log, sample_users=value, cache=False).num_items
    with pytest.raises(DataError, match="sample_users does not apply to split='presplit'"):
        FeedbackDataModule(path=tiny_log, split="presplit", sample_users=5)


# -- from_frame --


def test_from_frame_equals_the_file(tiny_log):
    frame = pl.read_csv(tiny_log)
    from_file = FeedbackDataModule(path=tiny_log, max_len=5, cache=False)
    for source in (frame, frame.lazy()):
        data = FeedbackDataModule.from_frame(source, max_len=5)
        assert data.num_items == from_file.num_items and data.user_ids.equals(from_file.user_ids)
        for name in ("train_sequences", "validation_sequences", "test_sequences"):
            ours, theirs = getattr(data, name), getattr(from_file, name)
            for field in ours.__dataclass_fields__:
                assert torch.equal(getattr(ours, field), getattr(theirs, field)), (name, field)


def test_from_frame_columns_and_errors(tiny_log):
    frame = pl.read_csv(tiny_log).rename({"user_id": "who", "rating": "stars"})
    data = FeedbackDataModule.from_frame(frame, user_col="who", feedback_col="stars", max_len=5)
    assert data.num_items == FeedbackDataModule(path=tiny_log, max_len=5, cache=False).num_items
    with pytest.raises(DataError, match=r"^frame: missing user column 'user_id'; the file has columns \['who'"):
        FeedbackDataModule.from_frame(frame).num_items


# -- the prepared-data cache --


def test_cache_is_written_once_then_mapped_and_invalidated(tiny_log, tmp_path):
    root = tmp_path / "cache"
    first = FeedbackDataModule(path=tiny_log, max_len=5, cache_dir=str(root))
    first.prepare_data()
    (entry,) = entries(root)
    assert (entry / "meta.json").is_file() and (root / f"{entry.name}.lock").is_file()
    second = FeedbackDataModule(path=tiny_log, max_len=5, cache_dir=str(root))
    calls = []
    second._build_tensors = lambda: calls.append(1)  # a cached run must not prepare again
    assert second.num_items == first.num_items and not calls
    assert "split" not in second.__dict__
    fresh = FeedbackDataModule(path=tiny_log, max_len=5, cache=False)
    for name in ("train_sequences", "validation_sequences", "test_sequences"):
        for field in getattr(fresh, name).__dataclass_fields__:
            assert torch.equal(getattr(getattr(second, name), field), getattr(getattr(fresh, name), field)), (name, field)
    assert torch.equal(second.item_counts, fresh.item_counts) and second.num_train_items == fresh.num_train_items
    assert second.decode([0, 1], [1, 2]).equals(fresh.decode([0, 1], [1, 2]))

    FeedbackDataModule(path=tiny_log, max_len=6, cache_dir=str(root)).prepare_data()  # another argument: another entry
    assert len(entries(root)) == 2
    log = pl.read_csv(tiny_log)
    log.with_columns(rating=6 - pl.col("rating")).write_csv(tiny_log)  # same size, other content
    changed = FeedbackDataModule(path=tiny_log, max_len=5, cache_dir=str(root))
    assert len(changed.train_sequences) > 0 and len(entries(root)) == 3
    fresh = FeedbackDataModule(path=tiny_log, max_len=5, cache=False)
    assert torch.equal(changed.train_sequences.positives, fresh.train_sequences.positives)


def test_a_cached_run_needs_no_log_for_the_item_neighbours_and_the_test_metrics(tiny_log, tmp_path):
    """The neighbours come from the training pairs the entry keeps: once it is mapped the log can be gone."""
    import lightning as L

    from negseq.data.neighbours import ItemNeighbours
    from negseq.training.module import NegSeqModule

    def test_metrics(data: FeedbackDataModule) -> dict:
        torch.manual_seed(0)
        model = NegSeqModule(data.num_items, data.num_train_items, max_len=10, dim=16, negative_scoring=1.0)  # reads dislikes: lists move
        (metrics,) = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False).test(model, datamodule=data, verbose=False)
        return metrics

    uncached = FeedbackDataModule(path=tiny_log, max_len=10, cache=False)
    items = torch.arange(uncached.num_items + 2)  # every item, the padding id and an unknown one
    expected = ItemNeighbours.from_events(uncached.split.train, uncached.num_items)(items)  # from the split's events, as before the cache kept them
    assert (expected > 0).sum() > uncached.num_items
    expected_metrics = test_metrics(FeedbackDataModule(path=tiny_log, max_len=10, cache=False))
    assert 0 < abs(expected_metrics["test/neighbour_suppression@10"]) < 1

    root = tmp_path / "cache"
    FeedbackDataModule(path=tiny_log, max_len=10, cache_dir=str(root)).prepare_data()  # writes the entry
    cached = FeedbackDataModule(path=tiny_log, max_len=10, cache_dir=str(root))
    cached.prepare_data()  # maps it
    Path(tiny_log).rename(tmp_path / "moved.csv")
    assert torch.equal(cached.item_neighbours(items), expected)
    assert test_metrics(cached) == pytest.approx(expected_metrics, nan_ok=True)
    assert "split" not in cached.__dict__


def test_cache_false_writes_nothing(tiny_log, tmp_path):
    root = tmp_path / "cache"
    FeedbackDataModule(path=tiny_log, cache=False, cache_dir=str(root)).prepare_data()
    assert not root.exists()


def test_default_cache_dir_follows_the_environment(tiny_log, tmp_path, monkeypatch):
    monkeypatch.setenv("NEGSEQ_CACHE_DIR", str(tmp_path / "here"))
    FeedbackDataModule(path=tiny_log).prepare_data()
    assert len(entries(tmp_path / "here")) == 1


@pytest.mark.slow
def test_two_process_fit_with_loader_workers_maps_the_cached_log(tiny_log, tmp_path):
    """DDP on 2 CPU processes, each with a DataLoader worker, reads the entry prepared before: nothing is prepared again.

    Before Python 3.12 the processes read it without workers: there a forked worker can deadlock as it starts when another
    thread (an earlier loader's queue feeder) exits at that moment (CPython gh-112275), which hung this test in 2 of 3
    whole-suite runs."""
    import json
    import subprocess
    import sys

    root = Path(__file__).parents[2]
    cache_dir = tmp_path / "cache"
    arguments = dict(path=tiny_log, max_len=10, batch_size=16, cache_dir=str(cache_dir))
    data = FeedbackDataModule(**arguments)
    data.prepare_data()
    (entry,) = entries(cache_dir)
    written = {path.name: path.stat().st_mtime_ns for path in entry.iterdir()}
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    command = [
        sys.executable, "-m", "negseq.fit", "--data.path", tiny_log, "--data.cache_dir", str(cache_dir), "--data.max_len", "10",
        "--data.batch_size", "16", "--data.num_workers", "1" if sys.version_info >= (3, 12) else "0", "--trainer.max_epochs", "1", "--model.dim", "16",
        "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.default_root_dir", str(tmp_path / "runs"),
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false", "--trainer.logger", "false",
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    assert entries(cache_dir) == [entry] and {path.name: path.stat().st_mtime_ns for path in entry.iterdir()} == written
    metrics = json.loads((Path(result.stdout.strip().splitlines()[-1]) / "metrics.json").read_text())
    assert metrics["test/n_users_pos"] + metrics["test/n_users_neg"] == len(data.test_sequences)  # every test user once, across both processes


def test_processes_started_together_prepare_once(tiny_log, tmp_path):
    """The entry's lock: a second preparer waits for the first and maps what it wrote (threads stand in for processes)."""
    import threading
    import time

    from negseq.data import cache

    prepared = FeedbackDataModule(path=tiny_log, max_len=5, cache=False).tensors
    builds, results = [], []

    def build():
        builds.append(1)
        time.sleep(0.3)  # long enough for the other to arrive while this one holds the lock
        return prepared

    threads = [threading.Thread(target=lambda: results.append(cache.load_or_write(tmp_path / "entry", build))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1 and sorted(written for _, written in results) == [False, True]
    assert all(torch.equal(loaded.train.positives, prepared.train.positives) for loaded, _ in results)


def test_every_argument_that_shapes_the_prepared_data_keys_the_cache(tiny_log, tmp_path, monkeypatch):
    """A constructor argument missing from the key would let a cached entry answer for other data (e.g. another holdout)."""
    keyed = {}
    monkeypatch.setattr("negseq.data.cache.cache_key", lambda arguments, files: keyed.update(arguments) or "entry")
    FeedbackDataModule(path=tiny_log, cache_dir=str(tmp_path))._cache_entry()
    not_prepared = {"path", "batch_size", "eval_batch_size", "num_workers", "cache", "cache_dir", "neighbours"}  # the path keys through its file
    shaping = set(inspect.signature(FeedbackDataModule.__init__).parameters) - {"self"} - not_prepared
    assert shaping <= set(keyed), sorted(shaping - set(keyed))


def test_the_sign_threshold_is_inclusive_and_a_log_needs_a_liked_event():
    frame = pl.DataFrame({"user_id": [1, 1, 1], "item_id": [1, 2, 3], "rating": [3.5, 4.0, 4.5], "timestamp": [1, 2, 3]})
    assert reading.read_events(frame, threshold=4.0).frame["positive"].to_list() == [False, True, True]
    with pytest.raises(DataError, match=re.escape("frame: no positive events: every feedback value is below the threshold 5.0 (max 4.5); lower --data.threshold")):
        reading.read_events(frame, threshold=5.0)


def test_a_datamodule_from_a_frame_saves_a_checkpoint(tiny_log, tmp_path, monkeypatch):
    """Lightning saves the DataModule's state (its catalogue) at every checkpoint: a frame has no file name to detect a format from."""
    import lightning as L

    from negseq.data.catalog import Catalog
    from negseq.training.module import NegSeqModule

    monkeypatch.chdir(tmp_path)  # a movies.csv here must not become the frame's titles (#24, 10)
    pl.DataFrame({"movieId": [100, 101], "title": ["A", "B"]}).write_csv(tmp_path / "movies.csv")
    data = FeedbackDataModule.from_frame(pl.read_csv(tiny_log), max_len=5, batch_size=16)
    model = NegSeqModule(data.num_items, data.num_train_items, max_len=5, dim=8)
    trainer = L.Trainer(max_epochs=1, default_root_dir=tmp_path, logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=data)
    (checkpoint,) = (tmp_path / "checkpoints").glob("*.ckpt")
    catalog = Catalog.from_state(torch.load(checkpoint, weights_only=True)["FeedbackDataModule"])
    assert catalog.item_ids.equals(data.item_ids, check_names=False)
    assert catalog.log_format == "parquet" and catalog.reading["threshold"] == 4.0 and catalog.titles is None


def test_a_change_to_a_split_rule_gets_a_new_cache_entry(tiny_log, tmp_path, monkeypatch):
    """The key hashes the code that builds an entry: a changed rule is a new entry with its own tensors, no version bumped."""
    root = tmp_path / "cache"
    before = FeedbackDataModule(path=tiny_log, max_len=5, cache_dir=str(root))
    before.prepare_data()
    (first,) = entries(root)
    rule = splits.leave_last_out

    def hold_out_nothing_for_validation(frame, seed, validation_targets="positive", holdout="half_users"):
        """Another split rule: the validation users are the test users."""
        split = rule(frame, seed, validation_targets, holdout)
        split.validation = split.test
        return split

    monkeypatch.setattr(splits, "leave_last_out", hold_out_nothing_for_validation)
    after = FeedbackDataModule(path=tiny_log, max_len=5, cache_dir=str(root))
    after.prepare_data()
    assert len(entries(root)) == 2 and first in entries(root)
    assert torch.equal(after.validation_sequences.positives, after.test_sequences.positives)
    assert not torch.equal(before.validation_sequences.positives, before.test_sequences.positives)
