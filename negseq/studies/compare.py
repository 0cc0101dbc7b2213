"""``python -m negseq.compare``: two configs on the same split and seeds, and a paired bootstrap interval per metric.

    python -m negseq.compare A.yaml B.yaml --seeds 10 --out runs/a_vs_b [--data D.yaml] [--base M.yaml] [--jobs 2] [-- --data.holdout every_user]
    python -m negseq.compare A.yaml B.yaml --seeds 3 --out runs/a_vs_b --data D1.yaml --data D2.yaml ...

Both configs run through the runner of :mod:`negseq.studies.runner` (``OUT/runs/<config>/seed<seed>/``; finished
runs are reused), with the overrides after ``--`` given to both. Each test user's gains of A and B
are paired by (seed, user) (:mod:`negseq.studies.paired`). ``OUT/COMPARE.md`` gets the table and, per pair of
metrics (HR_p with HR_n, NDCG_p with NDCG_n), whether one model dominates the other; ``OUT/frontier.png``
the picture of both (:mod:`negseq.studies.frontier`). One progress bar on stderr counts every run of every log.
The last line of output is one JSON object for NDCG_p@k (``metrics``: every metric's row by label;
``dominance``: each pair's).

With several ``--data`` logs, each log's runs, COMPARE.md and frontier.png are in ``OUT/<data config name>/``;
``OUT/COMPARE.md`` holds a row per log and the pooled row of each metric (the mean over logs of
the relative difference (A - B) / B, :func:`negseq.studies.paired.pooled`) and the dominance on each log and
pooled, and the JSON line holds the pooled NDCG_p@k fields with ``logs``: each log's summary.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import polars as pl
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from negseq.errors import ConfigError
from negseq.layout import run_cutoff
from negseq.studies import frontier
from negseq.studies.paired import compare, pair, pooled
from negseq.studies.runner import add_run_arguments, run_one, shared_configs

INTERVAL = "seeds and users resampled independently, each drawn user kept in every drawn seed"  # negseq.studies.paired's crossed bootstrap
FRONTIER = "frontier.png"  # beside each log's COMPARE.md
DOMINANCE_RULE = (
    "A dominates B on a pair of metrics when it is better on one (verdict a_better) and not worse on the other (not b_better);\n"
    "better on one and worse on the other is a trade, where neither dominates; an undefined verdict leaves it undecided."
)


def load_per_user(run_dirs: dict[int, str | Path]) -> tuple[pl.DataFrame, int]:
    """The per_user.parquet of each seed's run, with a ``seed`` column, and the runs' cut-off ``k``."""
    frames, ks = [], set()
    for seed, run_dir in run_dirs.items():
        run_dir = Path(run_dir)
        if not (run_dir / "per_user.parquet").is_file():
            raise ConfigError(f"{run_dir}: no per_user.parquet (a run made before runs wrote it); delete the run directory to rerun it")
        ks.add(run_cutoff(json.loads((run_dir / "metrics.json").read_text())))
        frames.append(pl.read_parquet(run_dir / "per_user.parquet").with_columns(seed=pl.lit(seed, dtype=pl.Int64)))
    if len(ks) > 1:
        raise ConfigError(f"runs under {run_dir.parent} were cut at different k {sorted(ks)}; rerun them with one --model.k")
    return pl.concat(frames), ks.pop()


def dominance_text(table: pl.DataFrame, k: int) -> str:
    """One line: each pair of metrics and who dominates on it (:func:`negseq.studies.frontier.dominance`)."""
    pairs = frontier.metric_pairs(k)
    return "; ".join(
        f"{pairs[name][0].label} with {pairs[name][1].label}: **{frontier.SENTENCES[result]}**" for name, result in frontier.dominance(table, k).items()
    )


def markdown(table: pl.DataFrame, a: str, b: str, seeds: list[int], users: int, k: int, command: str) -> str:
    """COMPARE.md: how it was made, a row per metric, the dominance of each pair of metrics and the frontier picture."""
    lines = [
        f"# {a} (A) vs {b} (B)",
        "",
        f"Seeds {seeds[0]}..{seeds[-1]} ({len(seeds)}), {users} test users per seed. Mean of the per-user gains over every",
        f"(seed, user); difference A - B with a 95 % bootstrap interval ({INTERVAL}).",
        "A verdict needs an interval that excludes 0; HR_n and NDCG_n are better lower. Regenerate (finished runs are reused):",
        "",
        f"    {command}",
        "",
        "| metric | A mean | B mean | difference | 95 % interval | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for row in table.iter_rows(named=True):
        lines.append(
            f"| {row['label']} | {row['a']:.4f} | {row['b']:.4f} | {row['diff']:+.4f} | [{row['ci_low']:+.4f}, {row['ci_high']:+.4f}] | {row['verdict']} |"
        )
    lines += ["", DOMINANCE_RULE, "", f"Dominance: {dominance_text(table, k)}.", "", f"![frontier]({FRONTIER})"]
    return "\n".join(lines) + "\n"


def pooled_markdown(tables: dict[str, pl.DataFrame], pooled_table: pl.DataFrame, a: str, b: str, seeds: list[int], k: int, command: str) -> str:
    """COMPARE.md over several logs: per metric, a row per log (relative and absolute difference) and the pooled row;
    then the dominance of each pair of metrics on each log and pooled."""
    lines = [
        f"# {a} (A) vs {b} (B) on {len(tables)} logs",
        "",
        f"Seeds {seeds[0]}..{seeds[-1]} ({len(seeds)}) on each log. Per log: the relative difference (A - B) / B of the means over",
        f"every (seed, user), and A - B with its 95 % interval ({INTERVAL}), as for one log.",
        "Pooled: the mean over logs (each log weighs the same) of the relative difference, with the interval of that mean",
        "over the same resamples drawn in every log (negseq.studies.paired.pooled). A verdict needs an interval that excludes 0; HR_n",
        "and NDCG_n are better lower. Each log's own COMPARE.md is in its folder. Regenerate (finished runs are reused):",
        "",
        f"    {command}",
        "",
        "| metric | log | A mean | B mean | relative | difference [95 %] | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for pooled_row in pooled_table.iter_rows(named=True):
        for log, table in tables.items():
            row = table.row(by_predicate=pl.col("metric") == pooled_row["metric"], named=True)
            relative = (row["a"] - row["b"]) / row["b"] if row["b"] else float("nan")
            lines.append(
                f"| {row['label']} | {log} | {row['a']:.4f} | {row['b']:.4f} | {relative:+.1%} | "
                f"{row['diff']:+.4f} [{row['ci_low']:+.4f}, {row['ci_high']:+.4f}] | {row['verdict']} |"
            )
        counts = ", ".join(f"{n} {verdict}" for verdict, n in log_verdicts(tables, pooled_row["metric"]).items())
        lines.append(
            f"| **{pooled_row['label']}** | **pooled** (logs: {counts}) | | | **{pooled_row['relative_diff']:+.1%}** | "
            f"[{pooled_row['ci_low']:+.1%}, {pooled_row['ci_high']:+.1%}] | **{pooled_row['verdict']}** |"
        )
    lines += ["", DOMINANCE_RULE, ""]
    lines += [f"- {log}: {dominance_text(table, k)} ([frontier]({log}/{FRONTIER}))" for log, table in tables.items()]
    lines.append(f"- pooled: {dominance_text(pooled_table, k)}")
    return "\n".join(lines) + "\n"


def log_verdicts(tables: dict[str, pl.DataFrame], metric: str) -> dict[str, int]:
    """How many logs give each verdict on ``metric``: what a user reads across logs (the pooled row only summarises)."""
    verdicts = [table.row(by_predicate=pl.col("metric") == metric, named=True)["verdict"] for table in tables.values()]
    return {verdict: verdicts.count(verdict) for verdict in ("a_better", "b_better", "no_difference", "undefined") if verdict in verdicts}


def summary(table: pl.DataFrame, k: int) -> dict:
    """NDCG_p@k's row of a comparison table, every metric's by label (``metrics``) and each pair's ``dominance``."""
    metric = f"test/ndcg_p@{k}"
    fields = [name for name in ("a", "b", "diff", "relative_diff", "ci_low", "ci_high", "verdict") if name in table.columns]
    row = table.row(by_predicate=pl.col("metric") == metric, named=True)
    return {
        "metric": metric, **{key: row[key] for key in fields},
        "metrics": {r["label"]: {key: r[key] for key in fields} for r in table.iter_rows(named=True)},
        "dominance": frontier.dominance(table, k),
    }


def run_all(jobs: list[tuple[list[Path], int, Path]], overrides: list[str], parallel: int) -> None:
    """Run (or reuse) every ``(configs, seed, run_dir)`` job, ``parallel`` at a time, under one progress bar on stderr.

    Finished runs count as done from the start and are not timed: the time left is the time the runs made in
    this session took on average, times the runs left. On a terminal the bar redraws in place; elsewhere (a log
    file, CI) rich prints it once, when all are done, under a ``done:`` line per run.
    """
    threads = max(1, (os.cpu_count() or 1) // parallel) if parallel > 1 else None
    todo = [job for job in jobs if not (job[-1] / "metrics.json").is_file()]
    columns = (TextColumn("runs"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn())
    # a run takes minutes: rich's default 30 s window for the speed would rarely hold two finished runs
    with Progress(*columns, console=Console(stderr=True), speed_estimate_period=7 * 24 * 3600) as progress:
        task = progress.add_task("runs", total=len(jobs), completed=len(jobs) - len(todo))
        progress.advance(task, 0)  # the start of the timing: rich's speed leaves out its first sample's runs
        with ThreadPoolExecutor(parallel) as pool:
            for future in as_completed([pool.submit(run_one, *job, overrides, threads) for job in todo]):
                run_dir = future.result()
                progress.advance(task)
                progress.console.out(f"done: {run_dir}", highlight=False)


def compare_log(args: argparse.Namespace, runs: dict[Path, dict[int, Path]], out: Path, seeds: list[int], command: str) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """Pair both configs' finished ``runs`` (config -> seed -> run dir) of one log; write ``out/COMPARE.md`` and
    ``out/frontier.png``: (paired, table, k)."""
    (a, k), (b, k_b) = load_per_user(runs[args.a]), load_per_user(runs[args.b])
    if k != k_b:
        raise ConfigError(f"A was evaluated at k={k} and B at k={k_b}; give both the same --model.k")
    paired = pair(a, b)
    table = compare(paired, k, resamples=args.resamples)
    (out / "COMPARE.md").write_text(markdown(table, args.a.stem, args.b.stem, seeds, paired["user_id"].n_unique(), k, command))
    curves = {
        config.stem: frontier.curve_points([json.loads((run_dir / "metrics.json").read_text()) for run_dir in by_seed.values()], k)
        for config, by_seed in runs.items()
    }
    frontier.draw(out / FRONTIER, table, args.a.stem, args.b.stem, k, curves)
    print(table.select("label", "a", "b", "diff", "ci_low", "ci_high", "verdict"))
    return paired, table, k


def main(argv: list[str] | None = None) -> dict:
    """Run (or reuse) both configs' runs on each log, compare them, write COMPARE.md; returns the NDCG_p@k summary printed last."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = shlex.join(["python", "-m", "negseq.compare", *argv])
    overrides = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(prog="python -m negseq.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("a", type=Path, help="negseq.fit YAML config of model A")
    parser.add_argument("b", type=Path, help="negseq.fit YAML config of model B (the reference)")
    parser.add_argument("--out", type=Path, required=True, help="holds runs/, COMPARE.md and frontier.png (with several --data: a folder per log)")
    parser.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples (default 10000)")
    add_run_arguments(parser, several_logs=True)
    args = parser.parse_args(argv)
    args.configs = [args.a, args.b]
    if args.a.stem == args.b.stem:
        raise ConfigError(f"both configs are named {args.a.stem!r}; their runs would share OUT/runs/{args.a.stem}: copy one under another name")
    if args.seeds < 1 or args.resamples < 1:
        raise ConfigError(f"--seeds and --resamples must be positive, got {args.seeds} and {args.resamples}")
    names = [data.stem for data in args.data]
    if len(set(names)) < len(names):
        raise ConfigError(f"two --data configs share a file name ({names}); their runs would share OUT/<name>: rename one")
    seeds = [args.first_seed + i for i in range(args.seeds)]
    # every log's runs first, so that one progress bar counts them all (None: the one log, in OUT itself)
    data_by_log = {data.stem: data for data in args.data} if len(args.data) > 1 else {None: args.data[0] if args.data else None}
    shared = {log: shared_configs(data, args, parser) for log, data in data_by_log.items()}
    folders = {log: args.out / log if log else args.out for log in data_by_log}
    runs = {log: {config: {seed: out / "runs" / config.stem / f"seed{seed}" for seed in seeds} for config in (args.a, args.b)} for log, out in folders.items()}
    jobs = [([*shared[log], config], seed, run_dir) for log in runs for config, by_seed in runs[log].items() for seed, run_dir in by_seed.items()]
    run_all(jobs, overrides, args.jobs)
    if len(folders) == 1:
        paired, table, k = compare_log(args, runs[None], args.out, seeds, command)
        result = summary(table, k) | {"seeds": len(seeds), "users": paired["user_id"].n_unique()}
    else:
        logs, tables = {}, {}
        for log, out in folders.items():
            print(f"== {log}", flush=True)
            logs[log], tables[log], k = compare_log(args, runs[log], out, seeds, command)
        pooled_table = pooled(logs, k, resamples=args.resamples)
        (args.out / "COMPARE.md").write_text(pooled_markdown(tables, pooled_table, args.a.stem, args.b.stem, seeds, k, command))
        print(pooled_table.select("label", "relative_diff", "ci_low", "ci_high", "verdict"))
        per_log = [{"log": name, **summary(table, k), "users": logs[name]["user_id"].n_unique()} for name, table in tables.items()]
        counts = {row["label"]: log_verdicts(tables, row["metric"]) for row in pooled_table.iter_rows(named=True)}
        result = summary(pooled_table, k) | {"seeds": len(seeds), "logs": per_log, "log_verdicts": counts}
    print(json.dumps(result), flush=True)
    return result
