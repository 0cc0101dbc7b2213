"""Names a run leaves behind: the files of its directory and the keys of its metrics, all derived from the cutoff k.

A leaf module (no negseq imports), so that the CLI, the result files, W&B tracking, the
experiment runner and the analysis package can all share it without importing each other.
"""

from __future__ import annotations

from collections.abc import Iterable

# files of a run directory
CONFIG_FILE = "config.yaml"
HISTORY_FILE = "history.jsonl"
METRICS_FILE = "metrics.json"
RECOMMENDATIONS_FILE = "recommendations.parquet"
PER_USER_FILE = "per_user.parquet"
SELECTION_FILE = "selection.json"
CHECKPOINT_DIR = "checkpoints"
BEST_CHECKPOINT = "best.ckpt"
LAST_CHECKPOINT = "last.ckpt"
WANDB_ID_FILE = "wandb-id"
WANDB_TABLE_KEY = "test/recommendations"
DEFAULT_ROOT = "runs"

DEFAULT_K = 10
STAGES = ("val", "test")
SIGNED_METRICS = ("hr", "ndcg", "mrr")  # each has a positive-target (_p) and a negative-target (_n) part
DELTA_METRICS = ("hr", "ndcg")  # Delta = positive part - negative part; also the metrics paired comparisons read
METRIC_LABELS = {"hr": "HR", "ndcg": "NDCG", "mrr": "MRR"}  # a signed metric's name in tables
USER_COUNTS = ("n_users_pos", "n_users_neg")
RESPONSIVENESS_METRICS = ("list_change", "neighbour_suppression")  # test only: the answer to a counterfactual dislike


def metric_names(k: int) -> tuple[str, ...]:
    """Names of the ranking metrics at cutoff ``k``, without stage: ``hr_p@k, ..., coverage@k``."""
    signed = [f"{name}_{sign}@{k}" for sign in ("p", "n") for name in SIGNED_METRICS]
    return (*signed, *(f"delta_{name}@{k}" for name in DELTA_METRICS), f"coverage@{k}")


def cutoffs(k: int, extra: Iterable[int] = ()) -> tuple[int, ...]:
    """The cutoffs reported: ``k`` first, then the other ``extra`` ones in increasing order."""
    return (k, *sorted(set(extra) - {k}))


def metric_keys(stage: str, k: int, extra: Iterable[int] = ()) -> tuple[str, ...]:
    """Every metric key a stage logs: ``stage/name@c`` for each cutoff (the test adds responsiveness), then the user counts."""
    responsiveness = RESPONSIVENESS_METRICS if stage == "test" else ()
    names = (name for c in cutoffs(k, extra) for name in (*metric_names(c), *(f"{r}@{c}" for r in responsiveness)))
    return (*(f"{stage}/{name}" for name in names), *(f"{stage}/{n}" for n in USER_COUNTS))


def monitor(k: int) -> str:
    """What early stopping and the best checkpoint follow: validation NDCG_p@k."""
    return f"val/ndcg_p@{k}"


def selection_monitor(k: int) -> str:
    """What ``--select_negative_scoring`` maximises by default: validation Delta_NDCG@k."""
    return f"val/delta_ndcg@{k}"


def best_monitor_key(k: int) -> str:
    """The W&B summary key of the best validation NDCG_p@k (what experiments/sweep.yaml optimises)."""
    return f"val/best_ndcg_p@{k}"


def table_rows(k: int) -> tuple[tuple[str, str, int, int], ...]:
    """Rows of the results table: (label, metrics.json key, better direction +1/-1/0, decimals)."""
    return (
        (f"HR_p@{k}", f"test/hr_p@{k}", +1, 4),
        (f"NDCG_p@{k}", f"test/ndcg_p@{k}", +1, 4),
        (f"Delta_HR@{k}", f"test/delta_hr@{k}", +1, 4),
        (f"Delta_NDCG@{k}", f"test/delta_ndcg@{k}", +1, 4),
        (f"HR_n@{k}", f"test/hr_n@{k}", -1, 4),
        (f"Coverage@{k}", f"test/coverage@{k}", +1, 4),
        (f"List change@{k}", f"test/list_change@{k}", 0, 4),
        (f"Neighbour suppression@{k}", f"test/neighbour_suppression@{k}", +1, 4),
        # validation (best checkpoint), what choices are made on; rows appear when the runs have them
        (f"val NDCG_p@{k}", f"val/ndcg_p@{k}", +1, 4),
        (f"val Delta_NDCG@{k}", f"val/delta_ndcg@{k}", +1, 4),
        (f"val HR_n@{k}", f"val/hr_n@{k}", -1, 4),
        ("negative_scoring (lambda)", "negative_scoring", 0, 4),
        ("dislike_demotion (lambda)", "dislike_demotion", 0, 4),
        ("polarity_prior (lambda)", "polarity_prior", 0, 4),
        ("sign_scoring (lambda)", "sign_scoring", 0, 4),
        ("training time, s", "fit_seconds", 0, 1),
        ("best epoch", "best_epoch", 0, 1),
    )


def run_cutoff(metrics: Iterable[str]) -> int:
    """The main cutoff k of a run, read from its metrics' keys in their order: metrics.json writes k's first
    (:func:`metric_keys`), so the first ``test/hr_p@c`` is k; the default when there is none."""
    return next((int(key.rsplit("@", 1)[1]) for key in metrics if key.startswith("test/hr_p@")), DEFAULT_K)
