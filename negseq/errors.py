"""Errors a user can act on: the CLI prints their message as one line instead of a traceback."""


class NegSeqError(ValueError):
    """Base of the package's user-facing errors."""


class DataError(NegSeqError):
    """An input file or data setting the pipeline cannot use; the message names the file, column and expectation."""


class ConfigError(NegSeqError):
    """A model or run setting that contradicts another or is out of range."""


class NonFiniteLossError(NegSeqError):
    """Training produced a NaN or infinite loss; the message names the epoch, step and loss terms."""
