"""Model families: each ``history`` value is one Family; the argument checks, ranking input and table names come from
it, and a family defined outside negseq is trained and ranked through its own input."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
import torch
from torch import Tensor

from negseq.analysis.runs import model_label
from negseq.errors import ConfigError
from negseq.models import inference
from negseq.models.families import FAMILIES, Family, SignSeparated, family
from negseq.models.families.base import shift
from negseq.training.module import NegSeqModule


def test_the_shipped_families_are_the_history_values():
    assert list(FAMILIES) == ["positives", "all", "signed"]
    assert [family(name).reads for name in FAMILIES] == ["positives", "history", "history with disliked codes negated"]
    with pytest.raises(ConfigError, match=r"`history` must be one of \['positives', 'all', 'signed'\], got 'liked'"):
        family("liked")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"history": "all", "alpha": 0.45}, r"`alpha` \(0.45\) needs a negative encoder, which only history='positives' has"),
        ({"history": "positives", "unlikelihood_weight": 1.0}, r"applies to history='all' or 'signed', where next items of both signs"),
        ({"history": "all", "alpha": 0, "sign_weight": 1.0}, r"`sign_weight` trains the sign head of history='signed' models"),
        ({"history": "signed", "alpha": 0, "contrast_negatives": "earlier"}, r"apply to history='positives', whose disliked items are apart"),
    ],
)
def test_an_option_for_a_part_the_family_lacks_names_the_families_that_have_it(arguments, message):
    with pytest.raises(ConfigError, match=message):
        NegSeqModule(num_items=20, num_train_items=20, **arguments)


@pytest.fixture
def newest_liked():
    """A family written outside negseq, registered by its definition and removed after the test: trained as SASRec_p,
    it ranks from the user's newest liked item alone."""

    class NewestLiked(Family):
        name = "test_newest_liked"
        reads = "the newest liked item"
        objective = SignSeparated
        negative_encoder = True
        disliked_apart = True

        def model_input(self, batch: Mapping[str, Tensor]) -> Tensor:
            return batch["positives"][:, -1:]

        def label(self, model: Mapping) -> str:
            return "Newest-liked SASRec_p"

    yield FAMILIES[NewestLiked.name]
    del FAMILIES[NewestLiked.name]


def test_a_family_defined_elsewhere_trains_and_ranks_through_its_own_input(newest_liked):
    torch.manual_seed(0)
    module = NegSeqModule(num_items=30, num_train_items=30, max_len=6, history=newest_liked.name, alpha=0, beta=0, dim=8)
    train = {"positives": torch.tensor([[0, 3, 4, 5, 6, 7, 8], [0, 0, 0, 9, 10, 11, 12]]), "negatives": torch.zeros(2, 7, dtype=torch.long)}
    train.update(positives_order=(train["positives"] > 0).cumsum(1), negatives_order=torch.zeros(2, 7, dtype=torch.long))
    assert set(module.loss_terms(train)) == {"loss_pos", "loss"}  # SASRec_p's objective, by the family's choice
    module.eval()
    users = {"positives": torch.tensor([[1, 2, 3], [4, 5, 6]]), "negatives": torch.zeros(2, 3, dtype=torch.long), "seen": torch.zeros(2, 1, dtype=torch.long)}
    newest_only = {**users, "positives": users["positives"][:, -1:]}
    with torch.no_grad():
        ranked = inference.rank(module.model, users, 5, newest_liked.name)
        expected = inference.rank(module.model, newest_only, 5, "positives")
    assert torch.equal(ranked.items, expected.items) and torch.equal(ranked.scores, expected.scores)
    assert model_label({"history": newest_liked.name, "polarity_prior": 1.0}) == "Newest-liked SASRec_p + polarity prior"


def test_shift_drops_the_label_of_a_first_item():
    inputs, labels = shift(torch.tensor([[0, 0, 5, 6, 7]]))
    assert inputs.tolist() == [[0, 0, 5, 6]] and labels.tolist() == [[0, 0, 6, 7]]
