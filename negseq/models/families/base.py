"""What every model family declares, and the registry of families by name (NegSeqModule's ``family``).

A family answers, for models of its kind: what the encoder reads from a batch (:meth:`Family.model_input`), the loss
it trains with (:attr:`Family.objective`, a dataclass whose fields are NegSeqModule arguments of the same name), which
parts of the network its options may switch on (so that :meth:`Family.check` refuses the options it has no use for) and
its name in tables (:meth:`Family.label`). Nothing outside a family's own module switches on its name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from negseq.errors import ConfigError

FAMILIES: dict[str, "Family"] = {}  # name -> the family, in the order their modules are imported
# the ``history`` values that named a family before 0.4.0 and differ from its name (``signed`` did not change)
HISTORY_VALUES = {"positives": "sign_separated", "all": "whole_history"}


def shift(sequences: Tensor) -> tuple[Tensor, Tensor]:
    """``(B, L + 1)`` left-padded ids -> inputs ``[:, :-1]`` and next-item labels ``[:, 1:]``.

    A label whose input position is padding is dropped (set to 0): the first item of a sequence
    has no preceding item to predict it from, so a sequence of one item gives no label.
    """
    inputs = sequences[:, :-1]
    return inputs, torch.where(inputs > 0, sequences[:, 1:], 0)


class Family:
    """A kind of model; a subclass registers itself under its ``name``."""

    name: ClassVar[str]  # the value of NegSeqModule's ``family`` that selects it: its module's name
    reads: ClassVar[str]  # what the encoder reads, in words (export.json's first input)
    objective: ClassVar[type]  # the loss: a frozen dataclass called as ``objective(model, batch, sampled)``
    signed_input: ClassVar[bool] = False  # the encoder embeds each event's sign besides its item
    negative_encoder: ClassVar[bool] = False  # ``alpha`` > 0 may build a second encoder over the disliked items
    labels_both_signs: ClassVar[bool] = False  # next items of both signs are labels (``unlikelihood_weight``)
    sign_head: ClassVar[bool] = False  # ``sign_weight`` > 0 may build a head that predicts the next event's sign
    disliked_apart: ClassVar[bool] = False  # the disliked items are a sequence of their own (hard negatives, contrast choice)
    nothing_to_read: ClassVar[str] = "item"  # what a user the model reads nothing of has none of (serving's message)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        FAMILIES[cls.name] = cls()

    def model_input(self, batch: Mapping[str, Tensor]) -> Tensor:
        """``(B, L)`` the left-padded sequence the encoder reads from an evaluation or serving batch."""
        raise NotImplementedError

    def build_objective(self, hp: Mapping[str, Any]) -> Any:
        """The objective with its options read by name from NegSeqModule's arguments ``hp``."""
        return self.objective(**{field.name: hp[field.name] for field in dataclasses.fields(self.objective)})

    def check(self, hp: Mapping[str, Any]) -> None:
        """Refuse an option that switches on a part this family does not have."""
        if hp["alpha"] and not self.negative_encoder:
            raise ConfigError(f"`alpha` ({hp['alpha']}) needs a negative encoder, which only {_which('negative_encoder')} has")
        if hp["unlikelihood_weight"] and not self.labels_both_signs:
            raise ConfigError(f"`unlikelihood_weight` applies to {_which('labels_both_signs')}, where next items of both signs are labels")
        if hp["unlikelihood_weight"] and hp["softmax"] != "full":
            raise ConfigError(
                f"`unlikelihood_weight` needs softmax='full': with softmax={hp['softmax']!r} p of a disliked next item is its share of a "
                "sampled denominator, so -log(1 - p) would not penalise the probability it names"
            )
        if hp["sign_weight"] and not self.sign_head:
            raise ConfigError(f"`sign_weight` trains the sign head of {_which('sign_head')} models")
        if (hp["hard_negative_weight"] or hp["contrast_negatives"] != "all") and not self.disliked_apart:
            raise ConfigError(f"`hard_negative_weight` and `contrast_negatives` apply to {_which('disliked_apart')}, whose disliked items are apart")

    def label(self, model: Mapping[str, Any]) -> str:
        """The model's name in tables from its full ``model:`` arguments (NegSeqModule's defaults filled in)."""
        raise NotImplementedError


def _which(part: str) -> str:
    """``family='a'`` or ``family='a' or 'b'``: the families that have ``part``."""
    names = [repr(name) for name, family in FAMILIES.items() if getattr(family, part)]
    return "family=" + " or ".join(names)


def family(name: str) -> Family:
    """The family called ``name`` (or by its ``history`` value before 0.4.0); a ConfigError naming the families otherwise."""
    name = HISTORY_VALUES.get(name, name)
    if name not in FAMILIES:
        raise ConfigError(f"`family` must be one of {list(FAMILIES)}, got {name!r}")
    return FAMILIES[name]


def family_of(model: Mapping[str, Any]) -> Family:
    """The family a run's ``model:`` configuration names: ``family``, or ``history`` in those written before 0.4.0
    (NegSeqModule's default when neither is there). Checkpoints are brought up to date by ``negseq.training.module.upgrade``."""
    return family(model.get("history") or model.get("family") or "sign_separated")
