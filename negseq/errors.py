"""Errors a user can act on: the CLI prints their message as one line instead of a traceback (:func:`run_cli`)."""

from __future__ import annotations

import logging
import sys


class NegSeqError(ValueError):
    """Base of the package's user-facing errors."""


class DataError(NegSeqError):
    """An input file or data setting the pipeline cannot use; the message names the file, column and expectation."""


class ConfigError(NegSeqError):
    """A model or run setting that contradicts another or is out of range."""


class NonFiniteLossError(NegSeqError):
    """Training produced a NaN or infinite loss; the message names the epoch, step and loss terms."""


class RunFailed(NegSeqError):
    """A fit that a runner started (negseq.studies.runner, negseq.studies.compare) exited with an error; its log names the cause."""


def run_cli(main, args=None) -> None:
    """Call ``main(args)``; a NegSeqError becomes one line on stderr and exit status 2, not a traceback.

    Here, beside the errors, so that every entry point (the training CLI, the experiment runners) wraps its ``main``
    without importing the training code."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        main(args)
    except NegSeqError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
