"""The prepared-data cache: tensors and vocabularies written once, memory-mapped by every run and process.

A cache entry is a directory ``<root>/<key>/`` whose key hashes the data arguments, the input
file's size, modification time and first and last MiB, and the code that builds the tensors
(:func:`code_version`): a changed file, argument, or reading, split or sequence code gets a new
entry. It holds one raw binary file per tensor (read back with ``torch.from_file``: pages are
mapped, not read, so every run of a table and every DDP process shares them through the page
cache), the user and item vocabularies as Parquet, and ``meta.json`` with shapes, dtypes and the
sizes the model needs. It is written to a temporary directory and renamed into place, so a
reader never sees half an entry, and under a lock, so that processes started together prepare
it once.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import importlib
import inspect
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import polars as pl
import torch
from torch import Tensor

from negseq.data.sequences import EvalSequences, TensorTable, TrainSequences

# the modules whose code decides what an entry holds: reading, validation, order, signs, filters, splits, tensors
BUILDERS = (
    "negseq.data.formats", "negseq.data.validation", "negseq.data.order", "negseq.data.ids", "negseq.data.reading", "negseq.data.splits",
    "negseq.data.sequences", "negseq.data.neighbours", "negseq.data.datamodule", "negseq.data.cache",
)
ENV_CACHE_DIR = "NEGSEQ_CACHE_DIR"
BLOCK = 1 << 20


def default_root() -> Path:
    """``$NEGSEQ_CACHE_DIR``, else ``.cache`` under ``$NEGSEQ_RUNS_DIR`` or the CLI's ``runs``."""
    if os.environ.get(ENV_CACHE_DIR):
        return Path(os.environ[ENV_CACHE_DIR])
    return Path(os.environ.get("NEGSEQ_RUNS_DIR") or "runs") / ".cache"


def file_fingerprint(path: Path) -> dict:
    """Size, modification time and a hash of the first and last MiB: cheap, and changes with any edit in practice."""
    stat = path.stat()
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        digest.update(handle.read(BLOCK))
        if stat.st_size > BLOCK:
            handle.seek(max(BLOCK, stat.st_size - BLOCK))
            digest.update(handle.read(BLOCK))
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "blocks": digest.hexdigest()}


def code_version() -> str:
    """A hash of the code that builds an entry: the source of :data:`BUILDERS`, and of any function bound into them
    from elsewhere (a patched split rule). No version to bump by hand: an edit of that code is a new key."""
    digest = hashlib.sha256()
    for name in BUILDERS:
        module = importlib.import_module(name)
        digest.update(inspect.getsource(module).encode())
        for attribute, value in sorted(vars(module).items()):
            if inspect.isfunction(value) and value.__module__ not in BUILDERS:
                digest.update(f"{attribute}={value.__module__}.{value.__qualname__}:{_source(value)}".encode())
    return digest.hexdigest()[:16]


def _source(value) -> str:
    try:
        return inspect.getsource(value)
    except (OSError, TypeError):  # defined where there is no source (a REPL): its bytecode
        return getattr(getattr(value, "__code__", None), "co_code", b"").hex()


def cache_key(arguments: dict, files: list[Path]) -> str:
    """The entry name for these data arguments and input files, under the current code."""
    described = {"code": code_version(), "arguments": arguments, "files": {str(path.resolve()): file_fingerprint(path) for path in files}}
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()[:24]


@dataclass
class DataTensors:
    """Everything training and evaluation read from the data: the three tensor tables, the vocabularies and two sizes."""

    train: TrainSequences
    validation: EvalSequences
    test: EvalSequences
    user_ids: pl.Series  # original id of user code u
    item_ids: pl.Series  # original id of item code c at position c - 1
    item_counts: Tensor  # (N + 1,) training events per item id
    liked_counts: Tensor  # (N + 1,) liked training events per item id (serving's popularity fallback)
    train_pairs: Tensor  # (P, 2) distinct training (user, item) pairs: the item neighbours' similarity, without the log
    num_train_items: int

    @property
    def num_items(self) -> int:
        return self.item_ids.len()


_TABLES = {"train": TrainSequences, "validation": EvalSequences, "test": EvalSequences}
_TENSORS = ("item_counts", "liked_counts", "train_pairs")


def write(prepared: DataTensors, directory: Path) -> None:
    """Write ``prepared`` as the entry ``directory`` (atomically: a temporary sibling renamed into place)."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = directory.parent / f".{directory.name}.{uuid.uuid4().hex}"
    staging.mkdir()
    tensors = {name: getattr(prepared, name) for name in _TENSORS}
    for name in _TABLES:
        table: TensorTable = getattr(prepared, name)
        tensors.update({f"{name}.{field.name}": getattr(table, field.name) for field in dataclasses.fields(table)})
    specs = {}
    for name, tensor in tensors.items():
        tensor = tensor.contiguous()
        tensor.numpy().tofile(staging / f"{name}.bin")
        specs[name] = {"shape": list(tensor.shape), "dtype": str(tensor.dtype).removeprefix("torch.")}
    pl.DataFrame({"id": prepared.user_ids}).write_parquet(staging / "user_ids.parquet")
    pl.DataFrame({"id": prepared.item_ids}).write_parquet(staging / "item_ids.parquet")
    meta = {"code": code_version(), "tensors": specs, "num_train_items": prepared.num_train_items}
    (staging / "meta.json").write_text(json.dumps(meta, indent=1))
    try:
        staging.rename(directory)
    except OSError:  # another process wrote the same entry first: theirs is as good
        shutil.rmtree(staging, ignore_errors=True)


def _mapped(path: Path, shape: list[int], dtype: str) -> Tensor:
    numel = 1
    for size in shape:
        numel *= size
    if numel == 0:
        return torch.zeros(shape, dtype=getattr(torch, dtype))
    return torch.from_file(str(path), shared=False, size=numel, dtype=getattr(torch, dtype)).view(shape)


def load(directory: Path) -> Optional[DataTensors]:
    """The entry at ``directory``, memory-mapped; None when there is none (or it was written by other code)."""
    meta_path = directory / "meta.json"
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    if meta.get("code") != code_version():
        return None
    tensors = {name: _mapped(directory / f"{name}.bin", spec["shape"], spec["dtype"]) for name, spec in meta["tensors"].items()}
    tables = {}
    for name, kind in _TABLES.items():
        tables[name] = kind(**{field.name: tensors[f"{name}.{field.name}"] for field in dataclasses.fields(kind)})
    return DataTensors(
        **tables,
        user_ids=pl.read_parquet(directory / "user_ids.parquet")["id"],
        item_ids=pl.read_parquet(directory / "item_ids.parquet")["id"],
        **{name: tensors[name] for name in _TENSORS},
        num_train_items=meta["num_train_items"],
    )


def load_or_write(directory: Path, build: Callable[[], DataTensors]) -> tuple[DataTensors, bool]:
    """The entry at ``directory``, written from ``build()`` first when there is none; and whether it was written here.

    A lock file next to the entry makes the processes that start together (DDP, torchrun, SLURM)
    wait while the first one prepares, instead of each preparing the log (and holding it) at once.
    The lock is released when its holder exits, even by a crash.
    """
    directory.parent.mkdir(parents=True, exist_ok=True)
    with open(directory.parent / f"{directory.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        loaded = load(directory)
        if loaded is not None:
            return loaded, False
        write(build(), directory)
        return load(directory), True
