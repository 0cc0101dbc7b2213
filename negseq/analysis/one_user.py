"""One user's history and recommendations from saved checkpoints, side by side for several models."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import polars as pl

from negseq.analysis.runs import read_config
from negseq.data.titles import attach_titles

LATER_DISLIKED = "✗ later disliked"
LATER_LIKED = "✓ later liked"

# -- one user's recommendations from checkpoints --


def _resolve_data_path(run_dir: Path, config: Mapping[str, Any], path: str) -> Path:
    """A relative ``data.path`` is relative to where the fit ran: found from the recorded and the actual run directory."""
    candidate = Path(path)
    if candidate.is_absolute() or candidate.exists():
        return candidate
    recorded = Path(str(config.get("run_dir") or ""))
    actual = Path(run_dir).resolve()
    if recorded.parts and not recorded.is_absolute() and actual.parts[-len(recorded.parts):] == recorded.parts:
        fit_cwd = actual.parents[len(recorded.parts) - 1]
        if (fit_cwd / candidate).exists():
            return fit_cwd / candidate
    return candidate


def run_datamodule(run_dir: "str | os.PathLike"):
    """The run's FeedbackDataModule, built from its config.yaml (same data, same split, same ids)."""
    from negseq.data import FeedbackDataModule

    config = read_config(run_dir)
    arguments = dict(config.get("data") or {})
    if arguments.get("path"):
        arguments["path"] = str(_resolve_data_path(Path(run_dir), config, arguments["path"]))
    return FeedbackDataModule(**arguments)


def load_model(checkpoint: "str | os.PathLike"):
    """A NegSeqModule from a checkpoint (``RUN/checkpoints/best.ckpt`` or a run directory), on CPU, in eval mode.

    The checkpoint is read with ``weights_only=True``: tensors and plain values, never pickled code.
    """
    from negseq.training import checkpoints

    return checkpoints.load_module(checkpoints.read(checkpoint)).eval()


def _user_code(data, user_id) -> int:
    ids = data.split.user_ids.cast(pl.String).to_list()
    try:
        return ids.index(str(user_id))
    except ValueError:
        raise KeyError(f"user {user_id!r} is not in the data") from None


def _user_batch(data, user_id) -> tuple[int, dict]:
    """The user's code and their one-row evaluation batch (test, else validation)."""
    code = _user_code(data, user_id)
    for sequences in (data.test_sequences, data.validation_sequences):
        rows = (sequences.user == code).nonzero().flatten()
        if len(rows):
            return code, sequences.take(rows[:1])
    raise KeyError(f"user {user_id!r} is neither a test nor a validation user")


def counterfactual_dislike(model, data, user_id, titles: Optional[pl.DataFrame] = None, k: Optional[int] = None) -> pl.DataFrame:
    """The user's top-k before and after a counterfactual dislike of its first item (:mod:`negseq.evaluation.responsiveness`).

    Columns ``rank``, ``before`` (L), ``first excluded`` (B: inputs unchanged, the first item only removed as seen)
    and ``after dislike`` (L'); cells ``title [item_id]``. An item of L' that was not in B is marked ``(new)``.
    """
    import torch

    code, batch = _user_batch(data, user_id)
    with torch.no_grad():
        top = model.recommend_batch(batch)
        baseline, after = model.respond_batch(batch, top)
    k = k or model.hparams.k
    lists = {"before": top[0, :k], "first excluded": baseline[0, :k], "after dislike": after[0, :k]}
    columns = {}
    for name, items in lists.items():
        ids = items[items > 0].tolist()
        frame = attach_titles(data.decode([code] * len(ids), ids).select("item_id"), titles)
        labels = [f"{r['title']} [{r['item_id']}]" if r.get("title") else str(r["item_id"]) for r in frame.iter_rows(named=True)]
        columns[name] = labels + [""] * (k - len(labels))
    columns["after dislike"] = [cell + ("  (new)" if cell and cell not in columns["first excluded"] else "") for cell in columns["after dislike"]]
    return pl.DataFrame({"rank": list(range(1, k + 1)), **columns})


def recommend_for_user(model, data, user_id, k: Optional[int] = None) -> pl.DataFrame:
    """``rank, item_id, score`` (original ids): the model's top-k for a test (else validation) user.

    The model reads what the evaluation reads: the user's history before the held-out item,
    with every item the user already interacted with removed from the ranking.
    """
    import torch

    code, batch = _user_batch(data, user_id)
    with torch.no_grad():
        out = model.predict_step(batch, 0)
    items, scores = out["items"][0], out["scores"][0]
    keep = items > 0
    frame = data.decode([code] * int(keep.sum()), items[keep].tolist()).select("item_id")
    frame = frame.with_columns(rank=pl.int_range(1, frame.height + 1, dtype=pl.Int32), score=pl.Series(scores[keep].tolist(), dtype=pl.Float32))
    return frame.select("rank", "item_id", "score").head(k or frame.height)


def user_events(data, user_id) -> pl.DataFrame:
    """The test (else validation) user's events in time order: ``time, item_id, positive, is_target``; ``is_target`` marks the held-out (later) event."""
    code = _user_code(data, user_id)
    for events in (data.split.test, data.split.validation):
        mine = events.filter(pl.col("user") == code)
        if mine.height:
            break
    else:
        raise KeyError(f"user {user_id!r} is neither a test nor a validation user")
    mine = mine.sort("time", "row")
    items = data.decode([code] * mine.height, mine.get_column("item").to_list()).get_column("item_id")
    return mine.select("time", item_id=items, positive="positive", is_target="is_target")


def compare_recommendations(
    data, user_id, models: Mapping[str, Any], titles: Optional[pl.DataFrame] = None, rows: int = 10
) -> pl.DataFrame:
    """One table: the user's latest liked and disliked items next to each model's top-``rows``.

    Cells are ``title [item_id]`` (or the id alone without titles); a recommended item that is
    the user's held-out later event is marked ``✗ later disliked`` or ``✓ later liked``.
    """
    events = attach_titles(user_events(data, user_id), titles)

    def label(row: Mapping[str, Any]) -> str:
        return f"{row['title']} [{row['item_id']}]" if row.get("title") else str(row["item_id"])

    history = events.filter(~pl.col("is_target")).reverse()
    later = {row["item_id"]: row["positive"] for row in events.filter("is_target").iter_rows(named=True)}
    columns: dict[str, list[str]] = {
        "liked (newest first)": [label(r) for r in history.filter("positive").head(rows).iter_rows(named=True)],
        "disliked (newest first)": [label(r) for r in history.filter(~pl.col("positive")).head(rows).iter_rows(named=True)],
    }
    for name, model in models.items():
        top = attach_titles(recommend_for_user(model, data, user_id, rows), titles)
        cells = []
        for r in top.iter_rows(named=True):
            mark = "" if r["item_id"] not in later else ("  " + (LATER_LIKED if later[r["item_id"]] else LATER_DISLIKED))
            cells.append(label(r) + mark)
        columns[f"{name} top-{rows}"] = cells
    height = max([rows, *(len(cells) for cells in columns.values())])
    return pl.DataFrame({"rank": list(range(1, height + 1)), **{name: cells + [""] * (height - len(cells)) for name, cells in columns.items()}})


def default_comparison(runs: pl.DataFrame) -> dict[str, str]:
    """``{model: run_dir}``: a PNFRec run and a SASRec run on the same data (first by seed), falling back to other models."""
    if runs.is_empty():
        return {}
    local = runs.filter(pl.col("source") == "local") if "source" in runs.columns else runs
    local = local.sort("seed", "run_dir", nulls_last=True)

    def first(frame: pl.DataFrame, preferences: Sequence[str]) -> Optional[dict]:
        for label in preferences:
            match = frame.filter(pl.col("model") == label)
            if match.height:
                return match.row(0, named=True)
        return frame.row(0, named=True) if frame.height else None

    main = first(local, ["PNFRec", "PNFRec CE+contrast", "PNFRec CE+CE"])
    chosen = {main["model"]: main["run_dir"]}
    same_data = local.filter(pl.col("run_dir") != main["run_dir"])
    for column in ("data.path", "data.split", "data.threshold", "data.split_seed", "data.min_item_users", "data.min_user_items"):
        if column in same_data.columns:
            same_data = same_data.filter(pl.col(column).eq_missing(main[column]))
    other = first(same_data.filter(pl.col("model") != main["model"]), ["SASRec", "SASRec_p", "SASRec_c", "SASRec+unlikelihood"])
    if other is not None:
        chosen[other["model"]] = other["run_dir"]
    return chosen


def pick_user(data, recommendations: Mapping[str, pl.DataFrame]):
    """A test user worth looking at: one whose held-out item was disliked and that some but not all models put in their top-k.

    Falls back to a user whose disliked held-out item any model recommends, then to any user
    with a disliked held-out item, then to the first test user. ``recommendations``: model
    name -> that run's recommendations frame.
    """
    targets = data.test_targets()
    disliked = targets.filter(~pl.col("positive"))
    promoted = {}
    for name, frame in recommendations.items():
        hits = disliked.join(frame.select(pl.col("user_id").cast(targets.schema["user_id"]), pl.col("item_id").cast(targets.schema["item_id"])), on=["user_id", "item_id"], how="semi")
        for user in hits.get_column("user_id").to_list():
            promoted.setdefault(user, set()).add(name)
    some_not_all = [u for u in disliked.get_column("user_id").to_list() if 0 < len(promoted.get(u, ())) < len(recommendations)]
    any_model = [u for u in disliked.get_column("user_id").to_list() if promoted.get(u)]
    for candidates in (some_not_all, any_model, disliked.get_column("user_id").to_list(), targets.get_column("user_id").to_list()):
        if candidates:
            return candidates[0]
    raise ValueError("the data has no test users")
