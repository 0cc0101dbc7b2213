"""Model families: each ``family`` value is one Family; the argument checks, ranking input and table names come from
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
    """One per module of negseq.models.families, in the order the modules are first imported (by name, a module that
    another imports before it)."""
    assert list(FAMILIES) == ["sign_separated", "positives_unlikelihood", "signed", "whole_history"]
    assert [family(name).reads for name in FAMILIES] == ["positives", "positives", "history with disliked codes negated", "history"]
    with pytest.raises(ConfigError, match=r"`family` must be one of \['sign_separated', 'positives_unlikelihood', 'signed', 'whole_history'\], got 'liked'"):
        family("liked")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"family": "whole_history", "alpha": 0.45}, r"`alpha` \(0.45\) needs a negative encoder, which only family='sign_separated' has"),
        ({"family": "sign_separated", "unlikelihood_weight": 1.0}, r"applies to family='positives_unlikelihood' or 'signed' or 'whole_history', where next items of both signs"),
        ({"family": "whole_history", "alpha": 0, "sign_weight": 1.0}, r"`sign_weight` trains the sign head of family='signed' models"),
        ({"family": "signed", "alpha": 0, "contrast_negatives": "earlier"}, r"apply to family='sign_separated', whose disliked items are apart"),
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
    module = NegSeqModule(num_items=30, num_train_items=30, max_len=6, family=newest_liked.name, alpha=0, beta=0, dim=8)
    train = {"positives": torch.tensor([[0, 3, 4, 5, 6, 7, 8], [0, 0, 0, 9, 10, 11, 12]]), "negatives": torch.zeros(2, 7, dtype=torch.long)}
    train.update(positives_order=(train["positives"] > 0).cumsum(1), negatives_order=torch.zeros(2, 7, dtype=torch.long))
    assert set(module.loss_terms(train)) == {"loss_pos", "loss"}  # SASRec_p's objective, by the family's choice
    module.eval()
    users = {"positives": torch.tensor([[1, 2, 3], [4, 5, 6]]), "negatives": torch.zeros(2, 3, dtype=torch.long), "seen": torch.zeros(2, 1, dtype=torch.long)}
    newest_only = {**users, "positives": users["positives"][:, -1:]}
    with torch.no_grad():
        ranked = inference.rank(module.model, users, 5, newest_liked.name)
        expected = inference.rank(module.model, newest_only, 5, "sign_separated")
    assert torch.equal(ranked.items, expected.items) and torch.equal(ranked.scores, expected.scores)
    assert model_label({"family": newest_liked.name, "polarity_prior": 1.0}) == "Newest-liked SASRec_p + polarity prior"


def test_shift_drops_the_label_of_a_first_item():
    inputs, labels = shift(torch.tensor([[0, 0, 5, 6, 7]]))
    assert inputs.tolist() == [[0, 0, 5, 6]] and labels.tolist() == [[0, 0, 6, 7]]


# -- the family added as one module: SASRec_p + unlikelihood --


def test_sasrec_p_unlikelihood_pushes_each_dislike_from_the_newest_liked_state_before_it():
    """Hand-computed: CE_pos as SASRec_p's, plus w * mean of -log(1 - p(d)) over the dislikes that have a liked input
    before them, p under the state of the newest such input (full softmax over items 1..N)."""
    torch.manual_seed(0)
    module = NegSeqModule(num_items=9, num_train_items=9, max_len=3, dim=8, family="positives_unlikelihood", alpha=0, beta=0, unlikelihood_weight=0.5)
    module.eval()  # no dropout: the expected values read the same states
    batch = {
        "positives": torch.tensor([[0, 3, 4, 5]]), "positives_order": torch.tensor([[0, 2, 4, 6]]),
        # 8 before any liked input (nothing to push from), 6 after 3 (time 2), 7 after 4 (time 4; 5 is a label only)
        "negatives": torch.tensor([[0, 8, 6, 7]]), "negatives_order": torch.tensor([[0, 1, 3, 7]]),
    }
    terms = module.loss_terms(batch)
    hidden = module.model.encode(torch.tensor([[0, 3, 4]]))[0]  # (3, D): states after padding, 3, 4
    log_p = torch.log_softmax(hidden @ module.model.items.weight[1:].T, dim=-1)  # (3, N): item j at column j - 1
    ce_pos = -(log_p[1, 4 - 1] + log_p[2, 5 - 1]) / 2
    unlikely = -(torch.log1p(-log_p[1, 6 - 1].exp()) + torch.log1p(-log_p[2, 7 - 1].exp())) / 2
    assert set(terms) == {"loss_pos", "loss_unlikely", "loss"}
    torch.testing.assert_close(terms["loss_pos"], ce_pos)
    torch.testing.assert_close(terms["loss_unlikely"], 0.5 * unlikely)
    # with no dislike that follows a liked input, the term is 0 and training is SASRec_p's
    alone = module.loss_terms({**batch, "negatives": torch.tensor([[0, 0, 0, 8]]), "negatives_order": torch.tensor([[0, 0, 0, 1]])})
    assert alone["loss_unlikely"].item() == 0.0 and torch.equal(alone["loss_pos"], terms["loss_pos"])


def test_sasrec_p_unlikelihood_ranks_as_sasrec_p_and_refuses_what_it_does_not_train():
    assert family("positives_unlikelihood").model_input({"positives": torch.tensor([[0, 1]]), "history": torch.tensor([[2, 1]])}).tolist() == [[0, 1]]
    assert model_label({"history": "positives_unlikelihood", "unlikelihood_weight": 1.0}) == "SASRec_p + unlikelihood"
    with pytest.raises(ConfigError, match=r"needs `unlikelihood_weight` > 0 \(without it, it is SASRec_p"):
        NegSeqModule(num_items=9, num_train_items=9, family="positives_unlikelihood", alpha=0, beta=0)
    with pytest.raises(ConfigError, match=r"`beta` \(0.25\) contrasts with a loss this family does not have"):
        NegSeqModule(num_items=9, num_train_items=9, family="positives_unlikelihood", alpha=0, unlikelihood_weight=1.0)
    with pytest.raises(ConfigError, match=r"`unlikelihood_weight` needs softmax='full'"):
        NegSeqModule(num_items=9, num_train_items=9, family="positives_unlikelihood", alpha=0, beta=0, unlikelihood_weight=1.0, softmax="uniform")


def test_the_family_by_its_old_history_name_warns_and_is_the_same_model():
    """Configs, flags and checkpoints before 0.4.0 name the family ``history`` with the values positives / all / signed."""
    with pytest.warns(DeprecationWarning, match=r"`history` is deprecated since 0.4.0: use `family` \(history='all' is family='whole_history'\)"):
        old = NegSeqModule(num_items=20, num_train_items=20, history="all", alpha=0, beta=0)
    assert old.hparams.family == "whole_history" and "history" not in old.hparams
    assert NegSeqModule(num_items=20, num_train_items=20, family="positives").hparams.family == "sign_separated"  # an old value, new key
    assert model_label({"history": "all", "beta": 0}) == model_label({"family": "whole_history", "beta": 0}) == "SASRec"
    assert model_label({"history": "positives", "alpha": 0, "beta": 0}) == "SASRec_p"
