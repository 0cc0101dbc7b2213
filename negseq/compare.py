"""``python -m negseq.compare``: two configs on the same split and seeds, and a paired bootstrap interval per metric.

    python -m negseq.compare A.yaml B.yaml --seeds 10 --out runs/a_vs_b [--data D.yaml] [--base M.yaml] [--jobs 2] [-- --data.holdout every_user]
    python -m negseq.compare A.yaml B.yaml --seeds 3 --out runs/a_vs_b --data D1.yaml --data D2.yaml ...

Both configs run through ``negseq.experiments``' runner (``OUT/runs/<config>/seed<seed>/``; finished
runs are reused), with the overrides after ``--`` given to both. Each test user's gains of A and B
are paired by (seed, user) (:mod:`negseq.paired`). ``OUT/COMPARE.md`` gets the table; the last
line of output is one JSON object for NDCG_p@k (``metrics``: every metric's row by label).

With several ``--data`` logs, each log's runs and COMPARE.md are in ``OUT/<data config name>/``;
``OUT/COMPARE.md`` holds a row per log and the pooled row of each metric (the mean over logs of
the relative difference (A - B) / B, :func:`negseq.paired.pooled`), and the JSON line holds the
pooled NDCG_p@k fields with ``logs``: each log's summary.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import polars as pl

from negseq.errors import ConfigError, run_cli
from negseq.experiments import add_run_arguments, run_one, shared_configs
from negseq.layout import run_cutoff
from negseq.paired import compare, pair, pooled


def load_per_user(run_dirs: dict[int, Path]) -> tuple[pl.DataFrame, int]:
    """The per_user.parquet of each seed's run, with a ``seed`` column, and the runs' cut-off ``k``."""
    frames, ks = [], set()
    for seed, run_dir in run_dirs.items():
        if not (run_dir / "per_user.parquet").is_file():
            raise ConfigError(f"{run_dir}: no per_user.parquet (a run made before runs wrote it); delete the run directory to rerun it")
        ks.add(run_cutoff(json.loads((run_dir / "metrics.json").read_text())))
        frames.append(pl.read_parquet(run_dir / "per_user.parquet").with_columns(seed=pl.lit(seed, dtype=pl.Int64)))
    if len(ks) > 1:
        raise ConfigError(f"runs under {run_dir.parent} were cut at different k {sorted(ks)}; rerun them with one --model.k")
    return pl.concat(frames), ks.pop()


def markdown(table: pl.DataFrame, a: str, b: str, seeds: list[int], users: int, command: str) -> str:
    """COMPARE.md: how it was made, and a row per metric."""
    lines = [
        f"# {a} (A) vs {b} (B)",
        "",
        f"Seeds {seeds[0]}..{seeds[-1]} ({len(seeds)}), {users} test users per seed. Mean of the per-user gains over every",
        "(seed, user); difference A - B with a 95 % bootstrap interval (seeds, and users within each seed, resampled).",
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
    return "\n".join(lines) + "\n"


def pooled_markdown(tables: dict[str, pl.DataFrame], pooled_table: pl.DataFrame, a: str, b: str, seeds: list[int], command: str) -> str:
    """COMPARE.md over several logs: per metric, a row per log (relative and absolute difference) and the pooled row."""
    lines = [
        f"# {a} (A) vs {b} (B) on {len(tables)} logs",
        "",
        f"Seeds {seeds[0]}..{seeds[-1]} ({len(seeds)}) on each log. Per log: the relative difference (A - B) / B of the means over",
        "every (seed, user), and A - B with its 95 % interval (seeds, and users within each seed, resampled), as for one log.",
        "Pooled: the mean over logs (each log weighs the same) of the relative difference, with the interval of that mean",
        "over the same resamples drawn in every log (negseq.paired.pooled). A verdict needs an interval that excludes 0; HR_n",
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
        lines.append(
            f"| **{pooled_row['label']}** | **pooled** | | | **{pooled_row['relative_diff']:+.1%}** | "
            f"[{pooled_row['ci_low']:+.1%}, {pooled_row['ci_high']:+.1%}] | **{pooled_row['verdict']}** |"
        )
    return "\n".join(lines) + "\n"


def summary(table: pl.DataFrame, metric: str) -> dict:
    """One metric's row of a comparison table, and every metric's by label (``metrics``)."""
    fields = [name for name in ("a", "b", "diff", "relative_diff", "ci_low", "ci_high", "verdict") if name in table.columns]
    row = table.row(by_predicate=pl.col("metric") == metric, named=True)
    return {"metric": metric, **{key: row[key] for key in fields}, "metrics": {r["label"]: {key: r[key] for key in fields} for r in table.iter_rows(named=True)}}


def compare_on_log(args: argparse.Namespace, shared: list[Path], out: Path, seeds: list[int], overrides: list[str], command: str) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """Run (or reuse) both configs' runs on one log under ``out/runs``, write ``out/COMPARE.md``: (paired, table, k)."""
    threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else None
    runs = {config: {seed: out / "runs" / config.stem / f"seed{seed}" for seed in seeds} for config in (args.a, args.b)}
    jobs = [(config, seed, run_dir) for config, by_seed in runs.items() for seed, run_dir in by_seed.items()]
    with ThreadPoolExecutor(args.jobs) as pool:
        for run_dir in pool.map(lambda job: run_one([*shared, job[0]], *job[1:], overrides, threads), jobs):
            print(f"done: {run_dir}", flush=True)
    (a, k), (b, k_b) = load_per_user(runs[args.a]), load_per_user(runs[args.b])
    if k != k_b:
        raise ConfigError(f"A was evaluated at k={k} and B at k={k_b}; give both the same --model.k")
    paired = pair(a, b)
    table = compare(paired, k, resamples=args.resamples)
    out.mkdir(parents=True, exist_ok=True)
    (out / "COMPARE.md").write_text(markdown(table, args.a.stem, args.b.stem, seeds, paired["user_id"].n_unique(), command))
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
    parser.add_argument("--out", type=Path, required=True, help="holds runs/ and COMPARE.md (with several --data: a folder per log)")
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
    if len(args.data) <= 1:
        data = args.data[0] if args.data else None
        paired, table, k = compare_on_log(args, shared_configs(data, args, parser), args.out, seeds, overrides, command)
        result = summary(table, f"test/ndcg_p@{k}") | {"seeds": len(seeds), "users": paired["user_id"].n_unique()}
    else:
        logs, tables = {}, {}
        for data in args.data:
            print(f"== {data.stem}", flush=True)
            logs[data.stem], tables[data.stem], k = compare_on_log(args, shared_configs(data, args, parser), args.out / data.stem, seeds, overrides, command)
        pooled_table = pooled(logs, k, resamples=args.resamples)
        (args.out / "COMPARE.md").write_text(pooled_markdown(tables, pooled_table, args.a.stem, args.b.stem, seeds, command))
        print(pooled_table.select("label", "relative_diff", "ci_low", "ci_high", "verdict"))
        metric = f"test/ndcg_p@{k}"
        per_log = [{"log": name, **summary(table, metric), "users": logs[name]["user_id"].n_unique()} for name, table in tables.items()]
        result = summary(pooled_table, metric) | {"seeds": len(seeds), "logs": per_log}
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    run_cli(main)
