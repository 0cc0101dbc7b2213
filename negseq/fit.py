"""``python -m negseq.fit [args]``: the same as ``python -m negseq fit [args]``.

Fit, restore the best checkpoint, choose ``--select_negative_scoring`` on validation, test,
predict and write the run's files (:func:`negseq.training.job.finish_fit`, run by the CLI's
``after_fit`` hook). The last line of output is the run directory, holding metrics.json,
recommendations.parquet, per_user.parquet, config.yaml, history.jsonl and checkpoints/
(best.ckpt, last.ckpt). :func:`main` is :func:`negseq.training.cli.fit`: the same job from Python.
"""

from __future__ import annotations

import sys

from negseq.errors import run_cli
from negseq.training.cli import fit as main

__all__ = ["main"]

if __name__ == "__main__":
    if sys.argv[1:2] != ["fit"]:  # processes started for other devices re-run this command line, "fit" included
        sys.argv.insert(1, "fit")  # the command line of `python -m negseq fit`
    run_cli(main)
