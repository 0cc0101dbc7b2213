"""Read an offline W&B run back from its ``.wandb`` file: config, history and summary.

wandb 0.31 ships no reader for its transaction logs (a private format); this one is for the tests:
they check what a run logged without uploading it. It lives under tests/, not in the package.
"""

from __future__ import annotations

import json
import os
import struct
import time
from pathlib import Path
from typing import Any, Iterator

_BLOCK = 32768
_HEADER = 7


def _records(path: Path) -> Iterator[bytes]:
    """The raw records of a ``.wandb`` transaction log (LevelDB log framing behind a 7-byte file header)."""
    buffer = Path(path).read_bytes()
    ident, magic, _version = struct.unpack("<4sHB", buffer[:_HEADER])
    if ident != b":W&B" or magic != 0xBEE1:
        raise ValueError(f"{path}: not a W&B transaction log")
    index, parts = _HEADER, []
    while index + _HEADER <= len(buffer):
        left = _BLOCK - index % _BLOCK
        if left < _HEADER:  # block trailer padding
            index += left
            continue
        _checksum, length, kind = struct.unpack("<IHB", buffer[index : index + _HEADER])
        index += _HEADER
        data, index = buffer[index : index + length], index + length
        if kind == 1:  # full
            yield data
        elif kind == 2:  # first
            parts = [data]
        elif kind == 3:  # middle
            parts.append(data)
        elif kind == 4:  # last
            parts.append(data)
            yield b"".join(parts)


def read_offline_run(path: str | os.PathLike, wait: float = 0.0) -> dict[str, Any]:
    """Config, history rows and summary of an offline W&B run, from its ``.wandb`` file.

    ``path`` is the ``.wandb`` file, an ``offline-run-*`` folder, or a run directory (its
    newest offline run). Returns ``{"id", "name", "config", "history", "summary", "files",
    "config_updates", "finished"}``: ``history`` is a list of dicts, one per ``log`` call;
    ``config_updates`` counts the config records after the run's start; ``finished`` says
    whether the run's exit record is there. wandb's service may still be writing the file just
    after ``wandb.finish()`` returns: ``wait`` gives the exit record that many seconds to appear.
    """
    path = Path(path)
    if path.is_dir():
        candidates = sorted(path.glob("*.wandb")) or sorted(path.glob("wandb/offline-run-*/*.wandb"))
        if not candidates:
            raise FileNotFoundError(f"{path}: no offline W&B run")
        path = candidates[-1]
    deadline = time.monotonic() + wait
    while True:
        run = _parse_run(path)
        if run["finished"] or time.monotonic() >= deadline:
            return run
        time.sleep(0.2)


def _item_keys(item) -> list[str]:
    return [item.key] if item.key else list(item.nested_key)


def _put(target: dict, item) -> None:
    *parents, last = _item_keys(item)
    for key in parents:
        target = target.setdefault(key, {})
    target[last] = json.loads(item.value_json)


def _drop(target: dict, item) -> None:
    *parents, last = _item_keys(item)
    for key in parents:
        target = target.get(key, {})
    target.pop(last, None)


def _parse_run(path: Path) -> dict[str, Any]:
    from wandb.proto import wandb_internal_pb2

    run: dict[str, Any] = {"id": None, "name": None, "config": {}, "history": [], "summary": {}, "files": [], "config_updates": 0, "finished": False}
    for data in _records(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run["id"], run["name"] = record.run.run_id, record.run.display_name
            for item in record.run.config.update:
                _put(run["config"], item)
        elif kind == "config":
            run["config_updates"] += 1
            for item in record.config.update:
                _put(run["config"], item)
            for item in record.config.remove:
                _drop(run["config"], item)
        elif kind == "history":
            row: dict[str, Any] = {}
            for item in record.history.item:
                _put(row, item)
            run["history"].append(row)
        elif kind == "summary":
            for item in record.summary.update:
                _put(run["summary"], item)
            for item in record.summary.remove:
                _drop(run["summary"], item)
        elif kind == "files":
            run["files"].extend(file.path for file in record.files.files)
        elif kind == "exit":
            run["finished"] = True
    run["config"].pop("_wandb", None)
    return run
