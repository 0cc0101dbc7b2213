"""``python -m negseq.experiments``: every (config, seed) through ``negseq.fit``, then the paper-style table.

    python -m negseq.experiments experiments/models/*.yaml --data experiments/data/ml-latest-small.yaml \
        --seeds 5 --out experiments/ml-latest-small [--jobs 2] [-- --data.path other.csv --trainer.max_epochs 50]
    python -m negseq.experiments experiments/models/pnfrec.yaml experiments/beyond/*.yaml \
        --data experiments/data/ml-latest-small.yaml --base experiments/models/pnfrec.yaml --out DIR

Each run is ``negseq.fit --config DATA --config BASE... --config CONFIG``: later configs override
earlier ones key by key, so a model file (``experiments/models/``) or an overlay holding only the
keys it changes (``experiments/beyond/``, over ``--base experiments/models/pnfrec.yaml``) meets the
dataset's section. Without ``--data`` and ``--base`` each config is a complete one, as before.
A run is named after its own config file, so two configs may not share a file name.

Each run lives in ``OUT/runs/<config>/seed<seed>/`` and is skipped when its metrics.json exists,
so an interrupted table run resumes where it stopped. ``OUT/runs.csv`` gets one row per finished
run, ``OUT/RESULTS.md`` the table (one column per model, mean ± sd over seeds) and, for runs that
chose ``negative_scoring`` on validation, ``OUT/selection.csv`` every candidate's validation metrics.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import polars as pl

from negseq import layout
from negseq.errors import RunFailed


def run_one(configs: list[Path], seed: int, run_dir: Path, overrides: list[str], threads: int | None) -> Path:
    """Fit and test one composition of ``configs`` (the last names the run) with one seed in a subprocess.

    A run without metrics.json is started afresh.
    """
    if (run_dir / "metrics.json").is_file():
        return run_dir
    shutil.rmtree(run_dir, ignore_errors=True)  # an interrupted run: its partial files would mix with the new ones
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    name = configs[-1].stem
    command = [
        sys.executable, "-m", "negseq.fit", *(arg for config in configs for arg in ("--config", str(config))),
        "--seed_everything", str(seed), "--run_dir", str(run_dir), "--run_name", f"{name}-seed{seed}",
        "--trainer.enable_progress_bar", "false", *overrides,
    ]
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(run_dir.parent / f"seed{seed}.log", "w") as log:
        result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    if result.returncode != 0:
        raise RunFailed(f"{name} seed {seed} failed (exit {result.returncode}); see {log.name}")
    return run_dir


def scalars(metrics: dict) -> dict:
    """metrics.json less its lists (``ranking_curve``: every candidate's test metrics, for the frontier, not the table)."""
    return {key: value for key, value in metrics.items() if not isinstance(value, list)}


def collect(runs_dir: Path) -> pl.DataFrame:
    """One row per finished run under ``runs_dir/<config>/seed<seed>/metrics.json``."""
    rows = [
        {"config": path.parent.parent.name, "seed": int(path.parent.name.removeprefix("seed")), **scalars(json.loads(path.read_text()))}
        for path in sorted(runs_dir.glob("*/seed*/metrics.json"))
    ]
    return pl.DataFrame(rows).sort("config", "seed") if rows else pl.DataFrame()


def collect_selections(runs_dir: Path) -> pl.DataFrame:
    """One row per (run, candidate negative-scoring weight) of the runs that chose one on validation (``selection.json``)."""
    rows = []
    for path in sorted(runs_dir.glob("*/seed*/selection.json")):
        selection = json.loads(path.read_text())
        identity = {"config": path.parent.parent.name, "seed": int(path.parent.name.removeprefix("seed"))}
        chosen = selection["chosen"] if isinstance(selection["chosen"], dict) else {"negative_scoring": selection["chosen"]}  # older runs: a number
        rows += [{**identity, **candidate, "chosen": all(candidate.get(name) == value for name, value in chosen.items())} for candidate in selection["candidates"]]
    return pl.DataFrame(rows).sort("config", "seed", "negative_scoring") if rows else pl.DataFrame()


def _number(key: str) -> pl.Expr:
    """A metric column as floats with NaN (an empty group, as older metrics.json wrote it) as null, which means skip."""
    return pl.col(key).cast(pl.Float64).fill_nan(None)


def _without_empty_groups(runs: pl.DataFrame) -> pl.DataFrame:
    """Null the negative-target metrics and the Deltas of runs whose stage had no user with a disliked target
    (runs written before such metrics were null said 0 there, and a Delta equal to the positive metric)."""
    for stage in layout.STAGES:
        count = f"{stage}/n_users_neg"
        if count not in runs.columns:
            continue
        empty = [c for c in runs.columns if c.startswith(f"{stage}/") and ("_n@" in c or c.startswith(f"{stage}/delta_"))]
        runs = runs.with_columns(pl.when(pl.col(count) > 0).then(pl.col(c)).otherwise(None).alias(c) for c in empty)
    return runs


def results_table(runs: pl.DataFrame, order: list[str] | None = None, k: int | None = None) -> str:
    """Markdown table: a column per config, a row per metric, mean ± sd over seeds; the best mean of each quality row in bold.

    Rows are :func:`negseq.layout.table_rows` of ``k`` (default: the runs' cutoff). A run's metric over a group with
    no user is null in metrics.json and left out of the mean; a row that no run has a value for (validation
    metrics of runs made before they were recorded, HR_n on a validation without disliked targets) is left
    out, and so is lambda when no run selected one.
    """
    k = k or layout.run_cutoff(runs.columns)
    runs = _without_empty_groups(runs)
    present = [row for row in layout.table_rows(k) if row[1] in runs.columns and runs[row[1]].is_not_null().any()]
    # other rows than the test metrics that are 0 in every run: runs written before empty groups were null, or no lambda selected
    table_rows = [row for row in present if row[1].startswith("test/") or (runs[row[1]] != 0).any()]
    stats = runs.group_by("config").agg(
        pl.len().alias("n"),
        *[_number(key).mean().alias(f"{key}:mean") for _, key, _, _ in table_rows],
        *[_number(key).std().fill_null(0.0).alias(f"{key}:sd") for _, key, _, _ in table_rows],
    )
    configs = [c for c in (order or sorted(stats["config"])) if c in set(stats["config"])]
    by_config = {row["config"]: row for row in stats.to_dicts()}
    lines = [
        "| | " + " | ".join(f"{c} (n={by_config[c]['n']})" for c in configs) + " |",
        "|---|" + "---|" * len(configs),
    ]
    for label, key, direction, digits in table_rows:
        means = [by_config[c][f"{key}:mean"] for c in configs]
        best = max((m for m in means if m is not None), key=lambda m: direction * m, default=None) if direction else None
        cells = []
        for config, mean in zip(configs, means):
            if mean is None:  # runs of this config lack the metric
                cells.append("")
                continue
            cell = f"{mean:.{digits}f} ± {by_config[config][f'{key}:sd']:.{digits}f}"
            cells.append(f"**{cell}**" if direction and mean == best else cell)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def add_run_arguments(parser: argparse.ArgumentParser, several_logs: bool = False) -> None:
    """The flags of how configs are composed and seeded, shared by this runner and ``negseq.studies.compare``
    (whose ``--data`` may be repeated: one log each)."""
    if several_logs:
        parser.add_argument("--data", type=Path, action="append", default=[], help="data config of a log (repeatable: both configs run on each log)")
    else:
        parser.add_argument("--data", type=Path, help="data config given first to every run (e.g. experiments/data/ml-1m.yaml)")
    parser.add_argument(
        "--base", type=Path, action="append", default=[],
        help="config given after --data and before each config, e.g. the model that overlays change (repeatable)",
    )
    parser.add_argument("--seeds", type=int, default=5, help="seeds per config (default 5)")
    parser.add_argument("--first_seed", type=int, default=42, help="seeds are first_seed, first_seed + 1, ...")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (each gets cores / jobs threads)")


def shared_configs(data: Path | None, args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[Path]:
    """``data`` then the ``--base`` configs, given before each run's own; every named config must exist."""
    shared = ([data] if data else []) + args.base
    for config in [*shared, *args.configs]:
        if not config.is_file():
            parser.error(f"config not found: {config}")
    return shared


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    overrides = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(prog="python -m negseq.experiments", description=__doc__.split("\n\n")[0])
    parser.add_argument("configs", nargs="+", type=Path, help="negseq.fit YAML configs, one run name (table column) each")
    parser.add_argument("--out", type=Path, default=Path("runs/experiments"), help="holds runs/, runs.csv and RESULTS.md")
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    shared = shared_configs(args.data, args, parser)
    names = [config.stem for config in args.configs]
    if len(set(names)) < len(names):
        parser.error(f"configs share a file name, hence a run directory: {sorted({n for n in names if names.count(n) > 1})}")
    runs_dir = args.out / "runs"
    threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else None
    pairs = [(config, args.first_seed + i) for config in args.configs for i in range(args.seeds)]

    def run_pair(pair: tuple[Path, int]) -> Path:
        config, seed = pair
        return run_one([*shared, config], seed, runs_dir / config.stem / f"seed{seed}", overrides, threads)

    with ThreadPoolExecutor(args.jobs) as pool:
        for run_dir in pool.map(run_pair, pairs):
            print(f"done: {run_dir}", flush=True)
    runs = collect(runs_dir)
    runs.write_csv(args.out / "runs.csv")
    selections = collect_selections(runs_dir)
    if not selections.is_empty():
        selections.write_csv(args.out / "selection.csv")
    table = results_table(runs, order=names)
    command = shlex.join(["python", "-m", "negseq.experiments", *(sys.argv[1:] if len(sys.argv) > 1 else [])])
    header = f"# Results\n\nMean ± sd over seeds of the test metrics. Regenerate (finished runs are reused):\n\n    {command}\n\n"
    (args.out / "RESULTS.md").write_text(header + table)
    print(table)
