"""``python -m negseq.compare``: two configs on the same split and seeds, paired intervals, the frontier (:mod:`negseq.studies.compare`).

The module's code moved to :mod:`negseq.studies.compare` in 0.4.0; its names still import from here, with a warning."""

from negseq.deprecation import moved
from negseq.errors import run_cli

__getattr__ = moved(__name__, {}, "negseq.studies.compare")

if __name__ == "__main__":
    from negseq.studies.compare import main

    run_cli(main)
