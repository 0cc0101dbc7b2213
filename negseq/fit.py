"""``python -m negseq.fit [args]``: the same as ``python -m negseq fit [args]``.

Fit, restore the best checkpoint, choose ``--select_negative_scoring`` on validation, test,
predict and write the run's files (:func:`negseq.job.finish_fit`, run by the CLI's
``after_fit`` hook). The last line of output is the run directory, holding metrics.json,
recommendations.parquet, per_user.parquet, config.yaml, history.jsonl and checkpoints/
(best.ckpt, last.ckpt).
"""

from __future__ import annotations

import sys
from typing import Optional

from negseq.cli import NegSeqCLI
from negseq.errors import run_cli


def main(args: Optional[list[str]] = None) -> dict:
    """Run ``fit`` with ``args`` (default: the command line); returns the metrics written to metrics.json (empty off the main process)."""
    cli = NegSeqCLI(args=None if args is None else ["fit", *args])
    return getattr(cli, "metrics", {})


if __name__ == "__main__":
    if sys.argv[1:2] != ["fit"]:  # processes started for other devices re-run this command line, "fit" included
        sys.argv.insert(1, "fit")  # the command line of `python -m negseq fit`
    run_cli(main)
