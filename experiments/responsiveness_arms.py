"""Paired arms of one trained PNFRec per seed: the ranking weights differ, the trained weights do not (issue #18).

    PYTHONPATH=. python experiments/responsiveness_arms.py OUT CONFIG   # OUT: `python -m negseq.experiments CONFIG ... --out OUT`

For each run under ``OUT/runs/<config>/seed<seed>/`` the best checkpoint ranks the validation users once per pair
``(negative_scoring, dislike_demotion)`` of CONFIG's ``select_*`` lists (with CONFIG's ``model`` ranking settings,
e.g. ``demotion_decay``) and the pairs are chosen by CONFIG's rule (:func:`negseq.training.selection.choose`, with its
suppression floor when it sets one): validation only. The checkpoint is then tested with each arm: ``pnfrec`` ranks
with (0, 0), the paper's ranking; ``negative_scoring`` (when CONFIG lists negative-scoring weights) with the pair the
rule picks among the pairs without demotion; ``pnfrec_plus`` with the pair it picks among all; and, chosen by
nothing, two fixed demotion weights (what demotion costs and buys on test, for reference). Writes ``OUT/arms.csv`` (one row per run and arm) and ``OUT/ARMS.md``:
mean ± sd per arm, and each arm minus ``pnfrec`` per seed, mean with a 95 % t interval over seeds.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import lightning as L
import polars as pl
import yaml

from negseq import layout
from negseq.analysis import load_model, run_datamodule
from negseq.training.selection import WEIGHTS, candidates, choose, set_weights, validate_each

METRICS = ("test/hr_p@10", "test/ndcg_p@10", "test/hr_n@10", "test/delta_ndcg@10", "test/list_change@10", "test/neighbour_suppression@10")
FIXED = {f"demotion {weight}": {**dict.fromkeys(WEIGHTS, 0.0), "dislike_demotion": weight} for weight in (1.0, 3.0)}  # not chosen: for reference
T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086)  # two-sided 95 % t, df 1..20


def arms(trainer: L.Trainer, model, data, config: dict) -> dict[str, dict[str, float]]:
    """The three rankings of a run: PNFRec's, negative scoring alone, and the chosen pair (CONFIG's rule, validation only)."""
    options = candidates(config.get("select_negative_scoring") or [0.0], config.get("select_dislike_demotion") or [0.0])
    floor = None if config.get("select_min_suppression") is None else ("val/neighbour_suppression@10", config["select_min_suppression"])
    results = validate_each(trainer, model, data, options, respond=floor is not None)
    rule = dict(
        monitor=config.get("select_monitor", layout.selection_monitor(10)), tolerance=config.get("select_tolerance"), keep=layout.monitor(10), floor=floor
    )
    chosen = {"pnfrec": dict.fromkeys(WEIGHTS, 0.0)}
    if config.get("select_negative_scoring"):
        plain = [index for index, option in enumerate(options) if option["dislike_demotion"] == 0]
        chosen["negative_scoring"] = options[plain[choose([options[i] for i in plain], [results[i] for i in plain], **rule)]]
    chosen["pnfrec_plus"] = options[choose(options, results, **rule)]
    return {**chosen, **FIXED}  # the fixed ones show what demotion costs and buys; nothing chose them


def test_arms(run_dir: Path, config: dict) -> list[dict]:
    model, data = load_model(run_dir), run_datamodule(run_dir)
    for name in ("demotion_window", "demotion_decay"):  # ranking settings of CONFIG; the trained weights stay the run's
        if name in config.get("model", {}):
            setattr(model.model, name, config["model"][name])
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    rows = []
    for arm, option in arms(trainer, model, data, config).items():
        set_weights(model, option)
        (metrics,) = trainer.test(model, datamodule=data, verbose=False)
        rows.append({"seed": int(run_dir.name.removeprefix("seed")), "arm": arm, **option, **{key: metrics[key] for key in METRICS}})
    return rows


def report(frame: pl.DataFrame) -> str:
    compared = [arm for arm in frame["arm"].unique(maintain_order=True) if arm != "pnfrec"]
    differences = [f"{arm} - pnfrec (95 % t)" for arm in compared]
    header = [*frame["arm"].unique(maintain_order=True), *differences]
    lines = ["| metric | " + " | ".join(header) + " |", "|---|" + "---|" * len(header)]
    base = frame.filter(pl.col("arm") == "pnfrec").sort("seed")
    for key in (*METRICS, *WEIGHTS):
        cells = []
        for arm in frame["arm"].unique(maintain_order=True):
            values = frame.filter(pl.col("arm") == arm)[key]
            cells.append(f"{values.mean():.4f} ± {values.std() or 0.0:.4f}")
        for arm in compared:
            diff = frame.filter(pl.col("arm") == arm).sort("seed")[key] - base[key]
            n = len(diff)
            half = T_975[n - 2] * (diff.std() or 0.0) / math.sqrt(n) if 2 <= n <= len(T_975) + 1 else float("nan")
            cells.append(f"{diff.mean():+.4f} [{diff.mean() - half:+.4f}, {diff.mean() + half:+.4f}]")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(out: Path, config_file: Path) -> None:
    config = yaml.safe_load(config_file.read_text())
    rows = [row for run_dir in sorted(out.glob("runs/*/seed*")) if (run_dir / layout.METRICS_FILE).is_file() for row in test_arms(run_dir, config)]
    frame = pl.DataFrame(rows)
    frame.write_csv(out / "arms.csv")
    table = report(frame)
    command = f"PYTHONPATH=. python experiments/responsiveness_arms.py {out} {config_file}"
    (out / "ARMS.md").write_text(f"# Paired arms (one trained PNFRec per seed)\n\n    {command}\n\n{table}")
    print(table)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
