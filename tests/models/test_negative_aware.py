"""Issue #8 options of NegSeqModule: negative-aware scoring, gated fusion, contrast with earlier dislikes only."""

import math

import pytest
import torch

from negseq.errors import ConfigError
from negseq.models import inference
from negseq.models.families.sign_separated import state_before as _state_before
from negseq.models.losses import next_item_loss
from negseq.models.recommender import GatedFusion
from negseq.training.module import NegSeqModule
from tests.rank_oracle import served_scores, sorted_ranks


def rank(module, sequences, seen, targets, negatives=None):
    """The module's ranking of ``targets`` among its top ``k`` (ranks, top scores, top ids), as its eval steps rank."""
    batch = {"positives": sequences, "seen": seen, "target": targets, **({} if negatives is None else {"negatives": negatives})}
    ranked = inference.rank(module.model, batch, module.hparams.k, "positives", module.hparams.score_block_items)
    return ranked.ranks, ranked.scores, ranked.items

SIZES = dict(num_items=20, num_train_items=20, max_len=5, dim=8, dropout=0.0)

# (B, L + 1) = (2, 6), left-padded, with when each item came (0 at padding)
POSITIVES = torch.tensor([[0, 0, 3, 5, 7, 9], [0, 0, 0, 0, 2, 4]])
POSITIVES_ORDER = torch.tensor([[0, 0, 1, 3, 5, 8], [0, 0, 0, 0, 1, 2]])
NEGATIVES = torch.tensor([[0, 0, 11, 12, 13, 14], [0, 0, 0, 0, 0, 0]])
NEGATIVES_ORDER = torch.tensor([[0, 0, 2, 4, 6, 7], [0, 0, 0, 0, 0, 0]])
# user 0 in time: +3 -11 +5 -12 +7 -13 -14 +9; user 1 has no dislikes


def make(**kwargs) -> NegSeqModule:
    torch.manual_seed(0)
    module = NegSeqModule(**{**SIZES, **kwargs})
    return module.eval()


def batch(**overrides) -> dict[str, torch.Tensor]:
    data = {
        "positives": POSITIVES,
        "negatives": NEGATIVES,
        "positives_order": POSITIVES_ORDER,
        "negatives_order": NEGATIVES_ORDER,
        "history": POSITIVES,
        "history_positive": POSITIVES > 0,
    }
    return {**data, **overrides}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(alpha=0.0, negative_scoring=0.5), "negative_scoring"),
        (dict(alpha=0.0, fusion="gated"), "fusion"),
        (dict(fusion="attention"), "fusion"),
        (dict(contrast_negatives="later"), "contrast_negatives"),
    ],
)
def test_invalid_negative_aware_configurations(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        make(**kwargs)


# -- the negative state before each label --


def test_state_before_picks_the_newest_earlier_state():
    states = torch.tensor([[0.0, 10.0, 20.0, 30.0]])[..., None]  # (1, 4, 1): one padding column, then three states
    state_order = torch.tensor([[0, 3, 5, 8]])
    label_order = torch.tensor([[2, 4, 6, 9, 0]])  # the last label is padding (order 0)
    picked = _state_before(states, state_order, label_order)
    assert picked[0, :, 0].tolist() == [0.0, 10.0, 20.0, 30.0, 0.0]


def test_gated_fusion_leaves_users_without_dislikes_unchanged():
    torch.manual_seed(0)
    fusion = GatedFusion(8)
    hidden = torch.randn(3, 8)
    assert torch.equal(fusion(hidden, torch.zeros(3, 8)), hidden)
    assert not torch.allclose(fusion(hidden, torch.randn(3, 8)), hidden)


# -- training --


def test_fusion_positive_loss_recomputed():
    module = make(alpha=0.45, beta=0.0, fusion="gated")
    terms = module.loss_terms(batch())
    with torch.no_grad():
        hidden = module.model.encode(POSITIVES[:, :-1])
        negative_hidden = module.model.encode(NEGATIVES[:, 1:], module.model.negative_encoder)  # the newest L dislikes
        state = _state_before(negative_hidden, NEGATIVES_ORDER[:, 1:], POSITIVES_ORDER[:, 1:])
        labels = torch.where(POSITIVES[:, :-1] > 0, POSITIVES[:, 1:], 0)
        expected = next_item_loss(module.model.fusion(hidden, state), labels, module.model.items.weight)
    torch.testing.assert_close(terms["loss_pos"], expected)


def test_fusion_trains_on_the_state_it_ranks_with():
    """The state fused for a label is the user vector ranking gives the history before it: user 0's label 9 comes after
    every dislike, so its training state is model(liked before 9, the last L dislikes before 9), newest dislike 14 included.
    A user whose only training dislike is the newest one feeds the gate too (n = 0 at every position before the fix)."""
    module = make(alpha=0.45, beta=0.0, fusion="gated")
    with torch.no_grad():
        states = module.objective.liked_states(module.model, batch())  # (B, L, D)
        served = module.model(POSITIVES[:1, :-1], NEGATIVES[:1, 1:])  # (1, D): the inputs of a test of label 9
    torch.testing.assert_close(states[0, -1], served[0])
    one_dislike = batch(negatives=torch.tensor([[0, 0, 0, 0, 0, 11], [0] * 6]), negatives_order=torch.tensor([[0, 0, 0, 0, 0, 2], [0] * 6]))
    module.loss_terms(one_dislike)["loss_pos"].backward()
    assert module.model.fusion.project.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("option", [dict(fusion="gated", beta=0.0), dict(contrast_negatives="earlier", beta=0.25)])
def test_dislikes_after_every_label_do_not_shape_the_liked_items_losses(option):
    """Only earlier dislikes count: changing user 0's oldest disliked input (11, before label 5) changes the
    loss, changing what came after the last label does not; user 1 has no dislikes."""
    module = make(alpha=0.45, **option)
    name = "loss_pos" if "fusion" in option else "loss_contrast"
    with torch.no_grad():
        reference = module.loss_terms(batch())[name]
        # reorder user 0's last disliked input (13) after every label: it now precedes no label
        late = module.loss_terms(batch(negatives_order=torch.tensor([[0, 0, 2, 4, 9, 10], [0] * 6])))[name]
        swapped = module.loss_terms(batch(negatives=torch.tensor([[0, 0, 11, 12, 16, 14], [0] * 6]), negatives_order=torch.tensor([[0, 0, 2, 4, 9, 10], [0] * 6])))[name]
        early_change = module.loss_terms(batch(negatives=torch.tensor([[0, 0, 16, 12, 13, 14], [0] * 6])))[name]
    assert swapped.item() == pytest.approx(late.item(), abs=1e-7)  # a dislike after every label is invisible
    assert late.item() != pytest.approx(reference.item(), abs=1e-6)  # it was visible to the last label before
    assert early_change.item() != pytest.approx(reference.item(), abs=1e-6)


def test_contrast_with_earlier_dislikes_by_hand():
    module = make(alpha=0.0, beta=1.0, contrast_negatives="earlier")
    with torch.no_grad():
        terms = module.loss_terms(batch())
        hidden, items = module.model.encode(POSITIVES[:, :-1]), module.model.items.weight.detach()

    def lse(values):
        top = max(values)
        return top + math.log(sum(math.exp(v - top) for v in values))

    # user 0's labels 5 (order 3), 7 (5), 9 (8) at inputs t = 2, 3, 4; disliked inputs 11 (2), 12 (4), 13 (6)
    per_query = []
    for t, label, earlier in ((2, 5, [11]), (3, 7, [11, 12]), (4, 9, [11, 12, 13])):
        h = hidden[0, t]
        positive = float(h @ items[label])
        per_query.append(lse([positive, *(float(h @ items[m]) for m in earlier)]) - positive)
    per_query.append(0.0)  # user 1's one label (4): no dislike at all
    assert terms["loss_contrast"].item() == pytest.approx(sum(per_query) / 4, rel=1e-5)


@pytest.mark.parametrize("option", ["all", "all_with_last"])
def test_contrast_with_the_newest_dislike_only_when_asked(option):
    """The paper (``all``) contrasts with the negative sequence's inputs: never the newest dislike, so a user with one
    training dislike gets no contrast; ``all_with_last`` contrasts with every disliked item."""
    one_dislike = torch.tensor([[0, 0, 11, 12, 13, 14], [0, 0, 0, 0, 0, 15]])
    module = make(alpha=0.0, beta=1.0, contrast_negatives=option)
    with torch.no_grad():
        terms = module.loss_terms(batch(negatives=one_dislike))
        hidden, items = module.model.encode(POSITIVES[:, :-1]), module.model.items.weight.detach()

    def lse(values):
        top = max(values)
        return top + math.log(sum(math.exp(v - top) for v in values))

    contrasted = {0: [11, 12, 13], 1: []} if option == "all" else {0: [11, 12, 13, 14], 1: [15]}
    per_query = []
    for b, t, label in ((0, 2, 5), (0, 3, 7), (0, 4, 9), (1, 4, 4)):
        positive = float(hidden[b, t] @ items[label])
        per_query.append(lse([positive, *(float(hidden[b, t] @ items[m]) for m in contrasted[b])]) - positive)
    assert terms["loss_contrast"].item() == pytest.approx(sum(per_query) / 4, rel=1e-5)
    assert (per_query[3] == 0.0) == (option == "all")


@pytest.mark.parametrize("softmax", ["uniform", "popularity"])
def test_hard_negatives_are_refused_with_a_sampled_softmax(softmax):
    """The extra mass of the disliked items would be on another scale than the sampled denominator (1/Q of the label)."""
    with pytest.raises(ConfigError, match="hard_negative_weight.*softmax='full'"):
        make(alpha=0.0, hard_negative_weight=1.0, softmax=softmax)
    make(alpha=0.0, hard_negative_weight=1.0, softmax="full")


# -- negative-aware scoring --


def test_negative_scoring_ranks_by_positive_minus_lambda_negative_logits():
    module = make(alpha=0.45, negative_scoring=0.7)
    sequences, negatives = POSITIVES[:, 1:], NEGATIVES[:, 1:]  # (2, L)
    seen = torch.tensor([[3, 0], [2, 4]])
    with torch.no_grad():
        scores = served_scores(module.model, sequences, seen, negatives)
        z_pos = module.model.encode(sequences)[:, -1] @ module.model.items.weight.T
        z_neg = module.model.encode(negatives, module.model.negative_encoder)[:, -1] @ module.model.items.weight.T
    expected = z_pos - 0.7 * z_neg * torch.tensor([[1.0], [0.0]])  # user 1 has no dislikes: z_pos alone
    expected[:, 0] = -math.inf
    expected[0, 3] = expected[1, 2] = expected[1, 4] = -math.inf
    torch.testing.assert_close(scores, expected, rtol=1e-5, atol=1e-5)


def test_negative_scoring_block_wise_ranks_match_the_score_matrix():
    module = make(alpha=0.45, negative_scoring=1.0, score_block_items=6, k=15)
    sequences, negatives, seen = POSITIVES[:, 1:], NEGATIVES[:, 1:], torch.tensor([[3, 0], [2, 4]])
    targets = torch.tensor([8, 15])
    with torch.no_grad():
        ranks, _, top_items = rank(module, sequences, seen, targets, negatives)
        scores = served_scores(module.model, sequences, seen, negatives)
    assert sorted_ranks(scores, targets).tolist() == [13.0, 17.0]
    assert ranks[0] == 13.0 and ranks[1] > 15  # above k, the block-wise count stops: a lower bound only
    assert top_items.tolist() == [scores[row].topk(15).indices.tolist() for row in range(2)]


def test_negative_scoring_needs_the_dislikes():
    module = make(alpha=0.45, negative_scoring=0.5)
    with pytest.raises(ConfigError, match="negatives"):
        served_scores(module.model, POSITIVES[:, 1:], torch.tensor([[0], [0]]))


def test_lambda_zero_keeps_the_papers_ranking():
    paper, aware = make(alpha=0.45), make(alpha=0.45, negative_scoring=0.0)
    with torch.no_grad():
        torch.testing.assert_close(served_scores(paper.model, POSITIVES[:, 1:], torch.tensor([[0], [0]])), served_scores(aware.model, POSITIVES[:, 1:], torch.tensor([[0], [0]]), NEGATIVES[:, 1:]))


# -- the user's dislikes as hard negatives in CE_pos --


def test_hard_negatives_count_extra_in_the_positive_softmax_by_hand():
    module = make(alpha=0.0, beta=0.0, hard_negative_weight=2.0)
    with torch.no_grad():
        terms = module.loss_terms(batch())
        hidden, items = module.model.encode(POSITIVES[:, :-1]), module.model.items.weight
    per_position = []
    # user 0: labels 5, 7, 9 at t = 2, 3, 4 against disliked inputs 11, 12, 13 counted 1 + 2 times; user 1: label 4, no dislikes
    for b, t, label, disliked in ((0, 2, 5, (11, 12, 13)), (0, 3, 7, (11, 12, 13)), (0, 4, 9, (11, 12, 13)), (1, 4, 4, ())):
        logits = hidden[b, t] @ items.T
        partition = logits[1:].exp().sum() + 2.0 * sum(logits[m].exp() for m in disliked)
        per_position.append(float(partition.log() - logits[label]))
    assert terms["loss_pos"].item() == pytest.approx(sum(per_position) / 4, rel=1e-5)


def test_hard_negatives_need_the_sign_separated_sequences():
    with pytest.raises(ConfigError, match="hard_negative_weight"):
        make(family="whole_history", alpha=0.0, hard_negative_weight=1.0)
    with pytest.raises(ConfigError, match="hard_negative_weight"):
        make(hard_negative_weight=-1.0)
