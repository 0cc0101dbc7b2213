"""Interaction logs in, paired positive/negative sequence tensors out."""

from negseq.data.datamodule import FeedbackDataModule
from negseq.data.reading import read_events
from negseq.errors import DataError

__all__ = ["DataError", "FeedbackDataModule", "read_events"]
