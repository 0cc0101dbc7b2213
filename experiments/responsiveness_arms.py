"""Paired arms of one trained PNFRec per seed: the ranking weights differ, the trained weights do not (issue #18).

    python experiments/responsiveness_arms.py OUT   # OUT: a `python -m negseq.experiments ... --out OUT` of pnfrec_plus

For each run under ``OUT/runs/<config>/seed<seed>/`` (a fit that chose ``(negative_scoring, dislike_demotion)`` on
validation, selection.json) the best checkpoint is tested three times: ``pnfrec`` ranks with (0, 0), the paper's
ranking; ``negative_scoring`` with the pair that the same rule picks among the candidates without demotion;
``pnfrec_plus`` with the pair chosen among all. Writes ``OUT/arms.csv`` (one row per run and arm) and
``OUT/ARMS.md``: mean ± sd per arm, and each arm minus ``pnfrec`` per seed, mean with a 95 % t interval over seeds.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import lightning as L
import polars as pl

from negseq import layout
from negseq.analysis import load_model, run_datamodule
from negseq.selection import WEIGHTS, choose, set_weights

METRICS = ("test/hr_p@10", "test/ndcg_p@10", "test/hr_n@10", "test/delta_ndcg@10", "test/list_change@10", "test/neighbour_suppression@10")
T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)  # two-sided 95 % t quantiles, df 1..10


def arms(selection: dict) -> dict[str, dict[str, float]]:
    """The three rankings of a run: PNFRec's, negative scoring alone, and the chosen pair (same rule as the fit)."""
    candidates = selection["candidates"]
    options = [{name: candidate[name] for name in WEIGHTS} for candidate in candidates]
    results = [{key: value for key, value in candidate.items() if key.startswith("val/")} for candidate in candidates]
    keep = layout.monitor(10)
    plain = [index for index, option in enumerate(options) if option["dislike_demotion"] == 0]
    scoring = plain[choose([options[i] for i in plain], [results[i] for i in plain], selection["monitor"], selection["tolerance"], keep)]
    return {"pnfrec": dict.fromkeys(WEIGHTS, 0.0), "negative_scoring": options[scoring], "pnfrec_plus": selection["chosen"]}


def test_arms(run_dir: Path) -> list[dict]:
    model, data = load_model(run_dir), run_datamodule(run_dir)
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    rows = []
    for arm, option in arms(json.loads((run_dir / layout.SELECTION_FILE).read_text())).items():
        set_weights(model, option)
        (metrics,) = trainer.test(model, datamodule=data, verbose=False)
        rows.append({"seed": int(run_dir.name.removeprefix("seed")), "arm": arm, **option, **{key: metrics[key] for key in METRICS}})
    return rows


def report(frame: pl.DataFrame) -> str:
    lines = ["| metric | " + " | ".join(frame["arm"].unique(maintain_order=True)) + " | plus - pnfrec (95 % t) | negative_scoring - pnfrec (95 % t) |",
             "|---|---|---|---|---|---|"]
    base = frame.filter(pl.col("arm") == "pnfrec").sort("seed")
    for key in (*METRICS, *WEIGHTS):
        cells = []
        for arm in frame["arm"].unique(maintain_order=True):
            values = frame.filter(pl.col("arm") == arm)[key]
            cells.append(f"{values.mean():.4f} ± {values.std() or 0.0:.4f}")
        for arm in ("pnfrec_plus", "negative_scoring"):
            diff = frame.filter(pl.col("arm") == arm).sort("seed")[key] - base[key]
            n = len(diff)
            half = T_975[n - 2] * (diff.std() or 0.0) / math.sqrt(n) if 2 <= n <= 11 else float("nan")
            cells.append(f"{diff.mean():+.4f} [{diff.mean() - half:+.4f}, {diff.mean() + half:+.4f}]")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(out: Path) -> None:
    rows = [row for run_dir in sorted(out.glob("runs/*/seed*")) if (run_dir / layout.SELECTION_FILE).is_file() for row in test_arms(run_dir)]
    frame = pl.DataFrame(rows)
    frame.write_csv(out / "arms.csv")
    table = report(frame)
    (out / "ARMS.md").write_text(f"# Paired arms (one trained PNFRec per seed)\n\n    python experiments/responsiveness_arms.py {out}\n\n{table}")
    print(table)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
