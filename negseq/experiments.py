"""``python -m negseq.experiments``: every (config, seed) through negseq.fit, then the table (:mod:`negseq.studies.runner`).

The module's code moved to :mod:`negseq.studies.runner` in 0.4.0; its names still import from here, with a warning."""

from negseq.deprecation import moved
from negseq.errors import run_cli

__getattr__ = moved(__name__, {}, "negseq.studies.runner")

if __name__ == "__main__":
    from negseq.studies.runner import main

    run_cli(main)
