"""Finished runs back as polars frames, the comparison table, plots, and one user's recommendations.

A package of one module per concern (:mod:`.runs`, :mod:`.wandb_runs`, :mod:`.plots`, :mod:`.one_user`;
titles from :mod:`negseq.data.titles`); every public name is re-exported here, so ``from negseq import
analysis`` is enough.

The notebooks in ``notebooks/`` are built on these functions and on nothing else of their own:

- :func:`load_runs` (one row per run: identity, configuration, ``metrics.json``, epochs and
  recommendation counts), :func:`load_history` (one row per run and epoch of ``history.jsonl``),
  :func:`load_recommendations` (every run's ``recommendations.parquet``), all from a directory
  of run directories (``python -m negseq.fit`` runs or ``python -m negseq.experiments`` output);
- :func:`load_wandb_runs`, :func:`load_wandb_history`, :func:`load_wandb_recommendations`: the
  same from a W&B project (online only), and :func:`combine_runs` to merge both without
  counting a synced local run twice;
- :func:`summary_table` (mean ± sd per model, via :func:`negseq.studies.runner.results_table`) and
  the plots :func:`plot_hr_scatter`, :func:`plot_delta_bars`, :func:`plot_validation_curves`,
  :func:`plot_training_time` (matplotlib, imported only when plotting);
- :func:`load_model`, :func:`run_datamodule`, :func:`recommend_for_user`, :func:`user_events`,
  :func:`compare_recommendations`, :func:`counterfactual_dislike`: score one user's history with saved checkpoints
  (and again after a dislike of their first item);
- :func:`item_titles`: movie titles of the embedded ml-latest-small (or of a MovieLens
  ``movies.csv``/``movies.dat`` next to a log).

Runs are grouped by ``model``, a label of the paper's model family read from the model's
configuration (:func:`model_label`), or by any other column (``config``: the config file's
name; ``model.alpha``, ...).
"""

from __future__ import annotations

from negseq.analysis.one_user import (
    LATER_DISLIKED,
    LATER_LIKED,
    compare_recommendations,
    counterfactual_dislike,
    default_comparison,
    load_model,
    pick_user,
    recommend_for_user,
    run_datamodule,
    user_events,
)
from negseq.analysis.plots import plot_delta_bars, plot_hr_scatter, plot_negative_scoring, plot_responsiveness, plot_training_time, plot_validation_curves
from negseq.analysis.runs import (
    ENV_RUNS_DIR,
    METRIC_COLUMNS,
    RUN_COLUMNS,
    find_runs,
    load_history,
    load_recommendations,
    load_runs,
    metric_stats,
    model_label,
    read_config,
    runs_dir,
    summary_table,
)
from negseq.analysis.wandb_runs import combine_runs, load_wandb_history, load_wandb_recommendations, load_wandb_runs
from negseq.data.titles import attach_titles, item_titles

__all__ = [
    "runs_dir",
    "find_runs",
    "read_config",
    "model_label",
    "load_runs",
    "load_history",
    "load_recommendations",
    "summary_table",
    "metric_stats",
    "ENV_RUNS_DIR",
    "METRIC_COLUMNS",
    "RUN_COLUMNS",
    "load_wandb_runs",
    "load_wandb_history",
    "load_wandb_recommendations",
    "combine_runs",
    "plot_hr_scatter",
    "plot_delta_bars",
    "plot_validation_curves",
    "plot_training_time",
    "plot_negative_scoring",
    "plot_responsiveness",
    "item_titles",
    "attach_titles",
    "run_datamodule",
    "load_model",
    "recommend_for_user",
    "counterfactual_dislike",
    "user_events",
    "compare_recommendations",
    "default_comparison",
    "pick_user",
    "LATER_DISLIKED",
    "LATER_LIKED",
]
