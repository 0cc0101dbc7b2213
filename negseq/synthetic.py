"""``python -m negseq.synthetic``: a planted synthetic log (:mod:`negseq.studies.synthetic`).

The module's code moved to :mod:`negseq.studies.synthetic` in 0.4.0; its names still import from here, with a warning."""

from negseq.deprecation import moved
from negseq.errors import run_cli

__getattr__ = moved(__name__, {}, "negseq.studies.synthetic")

if __name__ == "__main__":
    from negseq.studies.synthetic import main

    run_cli(main)
