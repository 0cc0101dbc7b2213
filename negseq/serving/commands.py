"""``negseq recommend`` and ``negseq export``: serving subcommands beside LightningCLI's fit/validate/test/predict.

``recommend`` writes ``user_id, item_id, rank, score`` (original ids and types) for every user of
a log with at least one item the model knows, batch by batch into one Parquet file, so memory
stays bounded by ``--batch_size``. The log is read as the training log was (format detection,
columns, header and separator, empty timestamps, threshold), each setting overridable with the same
``--data.*`` flags as ``fit``; ``--allowed`` and ``--blocked`` name text files of item ids (one a line): the only
candidates, and never these.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import polars as pl
import pyarrow.parquet as pq
from jsonargparse import ArgumentParser

from negseq.data.catalog import READING
from negseq.errors import ConfigError
from negseq.serving.api import Recommender
from negseq.serving.export import export_run

OUTPUT_COLUMNS = ("user_id", "item_id", "rank", "score")


def recommend_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="negseq recommend", description="Top-k for every user of a log from a trained run.")
    parser.add_argument("--run", type=str, required=True, help="Run directory (its checkpoints/best.ckpt) or a .ckpt file.")
    parser.add_argument("--data.path", type=str, required=True, help="Interaction log whose users to recommend for.")
    parser.add_argument("--data.format", type=Optional[str], default=None, help="Log format (default: the training run's setting).")
    for role in ("user", "item", "feedback", "time"):
        parser.add_argument(f"--data.{role}_col", type=Optional[str], default=None, help=f"{role} column (default: the training run's).")
    parser.add_argument("--data.has_header", type=Optional[bool], default=None, help="Delimited text with a header line (default: the training run's).")
    parser.add_argument("--data.separator", type=Optional[str], default=None, help="Field separator of delimited text (default: the training run's).")
    parser.add_argument("--data.missing_time", type=Optional[str], default=None, help="error or drop: events without a timestamp (default: the training run's).")
    parser.add_argument("--data.threshold", type=Optional[float], default=None, help="Feedback >= threshold is liked (default: the training run's).")
    parser.add_argument("--k", type=int, default=20, help="Recommendations per user.")
    parser.add_argument("--out", type=str, required=True, help="Output Parquet file: user_id, item_id, rank, score.")
    parser.add_argument("--users", type=Optional[str], default=None, help="Text file of user ids, one a line: only these users.")
    parser.add_argument("--allowed", type=Optional[str], default=None, help="Text file of item ids, one a line: recommend only these.")
    parser.add_argument("--blocked", type=Optional[str], default=None, help="Text file of item ids, one a line: never recommend these.")
    parser.add_argument("--batch_size", type=int, default=4096, help="Users per batch (memory bound).")
    parser.add_argument("--exclude_seen", type=bool, default=True, help="Never recommend an item the user interacted with.")
    parser.add_argument(
        "--precision", type=str, default="fp32",
        help="The encoder's, fp32 or bf16: bf16 is faster on bf16 hardware, its top-k can differ from fp32's at near-ties.",
    )
    return parser


def recommend(args: list[str]) -> None:
    config = recommend_parser().parse_args(args)
    recommender = Recommender.load(config.run, precision=config.precision)
    users = ids_file(config.users, "--users") if config.users else None
    allowed = item_ids_file(recommender, config.allowed, "--allowed") if config.allowed else None
    blocked = item_ids_file(recommender, config.blocked, "--blocked") if config.blocked else None
    reading = {name: config.data[name] for name in READING}
    batches = recommender.iter_log(
        config.data.path, config.k, config.exclude_seen, users, known_only=True, batch_size=config.batch_size, progress=True,
        items_allowed=allowed, items_blocked=blocked, **reading,
    )
    out = Path(config.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = None
    try:
        for batch in batches:  # at least one, empty when no user is left
            table = batch.select(OUTPUT_COLUMNS).to_arrow()
            writer = writer or pq.ParquetWriter(out, table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    print(out)


def ids_file(path: str, flag: str) -> list[str]:
    """The ids of a text file, one a line (``flag`` names the option in the error when it is missing)."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{flag} {file}: no such file; expected a text file of ids, one a line")
    return file.read_text().split()


def item_ids_file(recommender: Recommender, path: str, flag: str) -> pl.Series:
    """The item ids of a text file (one a line) as the model's id type (integers for an integer catalogue)."""
    ids = ids_file(path, flag)
    dtype = recommender.catalog.item_ids.dtype
    typed = pl.Series(ids, dtype=pl.String).cast(dtype, strict=False)
    if typed.null_count():
        raise ConfigError(f"{flag}: {ids[typed.is_null().arg_max()]!r} is not a {dtype} id, as the model's item ids are (like {recommender.catalog.item_ids[0]!r})")
    return typed


def export_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="negseq export", description="The user encoder (torch.export, ONNX), item matrix and vocabulary of a run.")
    parser.add_argument("--run", type=str, required=True, help="Run directory (its checkpoints/best.ckpt) or a .ckpt file.")
    parser.add_argument("--out", type=str, required=True, help="Output directory.")
    return parser


def export(args: list[str]) -> None:
    config = export_parser().parse_args(args)
    for role, path in export_run(config.run, config.out).items():
        print(f"{role}: {path}")


COMMANDS = {"recommend": recommend, "export": export}
