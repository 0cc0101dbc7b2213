"""Signed-history models (``family: signed``): the loss terms by hand, the encoder reading signs, the argument checks."""

import math

import pytest
import torch

from negseq.errors import ConfigError
from negseq.evaluation.responsiveness import with_dislike
from negseq.models.inference import model_input
from negseq.models.losses import label_log_probs
from negseq.models.recommender import SequentialRecommender, signed_history
from negseq.training.module import NegSeqModule
from tests.models.test_module import lse

SIZES = {"num_items": 20, "num_train_items": 20, "max_len": 7, "dim": 8, "dropout": 0.0}


def make(**kwargs) -> NegSeqModule:
    torch.manual_seed(0)
    return NegSeqModule(**{**SIZES, "family": "signed", "alpha": 0.0, "beta": 0.0, **kwargs})


# (B, L + 1) = (4, 6) mixed histories, left-padded, and the sign of each event (False at padding)
HISTORY = torch.tensor(
    [
        [0, 3, 11, 12, 5, 13],
        [0, 0, 2, 4, 8, 6],
        [0, 0, 0, 0, 16, 17],
        [0, 0, 0, 7, 9, 10],  # no dislike at all
    ]
)
LIKED = torch.tensor(
    [
        [False, True, False, False, True, False],
        [False, False, True, False, True, True],
        [False, False, False, False, False, True],
        [False, False, False, True, True, True],
    ]
)
# written out by hand: the signed inputs (a disliked item i as -i), the next event at each input and its sign
INPUTS = torch.tensor([[0, 3, -11, -12, 5], [0, 0, 2, -4, 8], [0, 0, 0, 0, -16], [0, 0, 0, 7, 9]])
# (user, position, next item, next liked): every next event of a real input
NEXT = [
    (0, 1, 11, False), (0, 2, 12, False), (0, 3, 5, True), (0, 4, 13, False),
    (1, 2, 4, False), (1, 3, 8, True), (1, 4, 6, True),
    (2, 4, 17, True),
    (3, 3, 9, True), (3, 4, 10, True),
]
# the disliked inputs of each user's window (the last event is a label, never an input: user 0's 13 is not here)
WINDOW_DISLIKES = {0: [11, 12], 1: [4], 2: [16], 3: []}


def batch(history: torch.Tensor = HISTORY, liked: torch.Tensor = LIKED) -> dict[str, torch.Tensor]:
    return {"history": history, "history_positive": liked}


def log_p(hidden: torch.Tensor, items: torch.Tensor, label: int) -> float:
    """Full-softmax log-probability of ``label`` over items 1..20, written out."""
    logits = [float(hidden @ items[i]) for i in range(1, 21)]
    return logits[label - 1] - lse(logits)


def hand_hidden(model: SequentialRecommender, inputs: torch.Tensor) -> torch.Tensor:
    """What a signed model's encoder computes, from its parts: item embedding of |id| plus sign embedding (1: disliked)."""
    embedded = model.items.weight[inputs.abs()] + model.signs.weight[(inputs < 0).long()]
    return model.encoder(embedded, inputs != 0)


# -- the input --


def test_signed_history_turns_disliked_ids_negative_and_keeps_padding_zero():
    assert torch.equal(signed_history(HISTORY, LIKED)[:, :-1], INPUTS)
    # the sign at a padding position does not matter: id 0 stays 0 either way
    assert torch.equal(signed_history(HISTORY, LIKED | (HISTORY == 0)), signed_history(HISTORY, LIKED))


def test_model_input_for_each_history_family():
    evaluation = {"positives": torch.tensor([[0, 3, 5]]), "negatives": torch.tensor([[0, 0, 4]]),
                  "history": torch.tensor([[3, 4, 5]]), "history_positive": torch.tensor([[True, False, True]])}
    assert model_input(evaluation, "positives").tolist() == [[0, 3, 5]]
    assert model_input(evaluation, "all").tolist() == [[3, 4, 5]]
    assert model_input(evaluation, "signed").tolist() == [[3, -4, 5]]


def test_a_counterfactual_dislike_enters_the_signed_input_with_its_sign():
    evaluation = {"positives": torch.tensor([[0, 3, 5]]), "negatives": torch.tensor([[0, 0, 4]]), "history": torch.tensor([[3, 4, 5]]),
                  "history_positive": torch.tensor([[True, False, True]]), "seen": torch.tensor([[3, 4, 5]])}
    changed = with_dislike(evaluation, torch.tensor([9]))
    assert model_input(changed, "signed").tolist() == [[-4, 5, -9]]
    assert changed["history_positive"].dtype == torch.bool and changed["seen"].tolist() == [[3, 4, 5, 9]]
    assert model_input(evaluation, "signed").tolist() == [[3, -4, 5]]  # the original batch is untouched


# -- the encoder --


def test_the_encoder_adds_a_sign_embedding_to_each_event():
    model = make().model
    assert model.signs.weight.shape == (2, 8) and model.sign_head is None
    with torch.no_grad():
        torch.testing.assert_close(model.encode(INPUTS), hand_hidden(model, INPUTS))


def test_flipping_one_sign_changes_the_states_from_that_event_on():
    model = make().model.eval()
    liked = torch.tensor([[0, 0, 3, 5, 7]])
    flipped = torch.tensor([[0, 0, 3, -5, 7]])
    with torch.no_grad():
        a, b = model.encode(liked), model.encode(flipped)
        last_a, last_b = model(liked), model(flipped)
    torch.testing.assert_close(a[:, :3], b[:, :3])  # causal: the states before the flipped event do not see it
    assert not torch.allclose(a[:, 3], b[:, 3]) and not torch.allclose(a[:, 4], b[:, 4])
    assert not torch.allclose(last_a, last_b)  # and so the user vector ranking reads


def test_a_model_built_without_signed_ignores_the_signs():
    torch.manual_seed(0)
    unsigned = NegSeqModule(**SIZES, family="whole_history", alpha=0.0, beta=0.0)
    assert unsigned.model.signs is None
    liked = torch.tensor([[0, 0, 3, 5, 7]])
    with torch.no_grad():
        torch.testing.assert_close(unsigned.model.encode(liked), unsigned.model.encode(torch.tensor([[0, 0, 3, -5, 7]])))
    # a whole-history model reads the history's items whatever their signs
    evaluation = {"history": HISTORY, "history_positive": LIKED}
    assert torch.equal(model_input(evaluation, "all"), model_input({**evaluation, "history_positive": ~LIKED}, "all"))


def test_padding_stays_padding_in_a_signed_model():
    model = make().model.eval()
    with torch.no_grad():
        short = model.encode(torch.tensor([[0, 0, 3, -5, 7]]))
        long = model.encode(torch.tensor([[0, 0, 0, 0, 3, -5, 7]]))
        # the sign embedding is not added at padding: more padding on the left changes no real position's state
        torch.testing.assert_close(short[:, 2:], long[:, 4:])
        torch.testing.assert_close(model(torch.tensor([[0, 0, 3, -5, 7]])), model(torch.tensor([[0, 0, 0, 0, 3, -5, 7]])))


# -- the loss terms --


def test_only_the_next_item_term_by_default_and_each_term_with_its_weight():
    assert set(make().loss_terms(batch())) == {"loss", "loss_next"}
    assert set(make(unlikelihood_weight=1.0).loss_terms(batch())) == {"loss", "loss_next"}
    assert set(make(beta=0.25).loss_terms(batch())) == {"loss", "loss_next", "loss_contrast"}
    assert set(make(sign_weight=0.5).loss_terms(batch())) == {"loss", "loss_next", "loss_sign"}
    terms = make(beta=0.25, sign_weight=0.5, unlikelihood_weight=1.0).loss_terms(batch())
    assert set(terms) == {"loss", "loss_next", "loss_contrast", "loss_sign"}
    torch.testing.assert_close(terms["loss"], terms["loss_next"] + terms["loss_contrast"] + terms["loss_sign"])
    assert make().model.sign_head is None and make(sign_weight=0.5).model.sign_head is not None


def test_cross_entropy_on_the_next_liked_items_only_by_hand():
    module = make()
    terms = module.loss_terms(batch())
    items = module.model.items.weight
    with torch.no_grad():
        hidden = hand_hidden(module.model, INPUTS)
        ce = [-log_p(hidden[b, t], items, item) for b, t, item, liked in NEXT if liked]
    assert len(ce) == 6  # 5 of user 0; 8, 6 of user 1; 17 of user 2; 9, 10 of user 3
    assert terms["loss_next"].item() == pytest.approx(sum(ce) / 6, rel=1e-5)
    # a disliked next item is no label: changing user 0's last (disliked, never an input) event changes nothing
    other = HISTORY.clone()
    other[0, -1] = 19
    assert module.loss_terms(batch(other))["loss_next"].item() == terms["loss_next"].item()


def test_unlikelihood_on_the_disliked_next_items_by_hand():
    w = 0.7
    module = make(unlikelihood_weight=w)
    terms = module.loss_terms(batch())
    items = module.model.items.weight
    with torch.no_grad():
        hidden = hand_hidden(module.model, INPUTS)
        per_event = []
        for b, t, item, liked in NEXT:
            lp = log_p(hidden[b, t], items, item)
            per_event.append(-lp if liked else -w * math.log(1 - math.exp(lp)))
        # the same through the package's label_log_probs, as an independent check of the written-out softmax
        assert log_p(hidden[0, 1], items, 11) == pytest.approx(label_log_probs(hidden[0, 1][None], torch.tensor([11]), items).item(), rel=1e-5)
    assert len(per_event) == 10
    assert terms["loss_next"].item() == pytest.approx(sum(per_event) / 10, rel=1e-5)
    other = HISTORY.clone()
    other[0, -1] = 19  # now the disliked next item is a label: it moves the loss
    assert module.loss_terms(batch(other))["loss_next"].item() != pytest.approx(terms["loss_next"].item(), rel=1e-6)


def contrast_by_hand(hidden: torch.Tensor, items: torch.Tensor, users: list[int]) -> float:
    """Each next liked item against the disliked inputs of its user's window, dot products, temperature 1."""
    per_query = []
    for b, t, item, liked in NEXT:
        if not liked or b not in users:
            continue
        h = hidden[users.index(b), t]
        s_pos = float(h @ items[item])
        per_query.append(lse([s_pos, *(float(h @ items[m]) for m in WINDOW_DISLIKES[b])]) - s_pos)
    return sum(per_query) / len(per_query)


def test_contrast_uses_exactly_the_disliked_inputs_of_the_window():
    module = make(beta=0.25)
    terms = module.loss_terms(batch())
    with torch.no_grad():
        expected = contrast_by_hand(hand_hidden(module.model, INPUTS), module.model.items.weight, [0, 1, 2, 3])
    assert terms["loss_contrast"].item() == pytest.approx(0.25 * expected, rel=1e-5)
    # user 3 has no dislike: no contrast at all, and its two queries count as 0 in the batch's mean
    alone = module.loss_terms(batch(HISTORY[3:], LIKED[3:]))
    assert alone["loss_contrast"].item() == 0.0
    with torch.no_grad():
        three = contrast_by_hand(hand_hidden(module.model, INPUTS[:3]), module.model.items.weight, [0, 1, 2])
    assert terms["loss_contrast"].item() == pytest.approx(0.25 * three * 4 / 6, rel=1e-5)


def test_sign_head_targets_are_the_next_events_signs_by_hand():
    module = make(sign_weight=0.5)
    terms = module.loss_terms(batch())
    model = module.model
    with torch.no_grad():
        hidden = hand_hidden(model, INPUTS)
        w, bias = model.sign_head.weight[0], float(model.sign_head.bias[0])
        bce = []
        for b, t, item, liked in NEXT:
            logit = float((hidden[b, t] * model.items.weight[item]) @ w) + bias
            p = 1 / (1 + math.exp(-logit))
            bce.append(-math.log(p) if liked else -math.log(1 - p))
    assert len(bce) == 10  # every next event, liked or not
    assert terms["loss_sign"].item() == pytest.approx(0.5 * sum(bce) / 10, rel=1e-5)


def test_every_term_trains_the_sign_embedding_and_the_head():
    module = make(beta=0.25, sign_weight=0.5, unlikelihood_weight=1.0)
    module.loss_terms(batch())["loss"].backward()
    assert module.model.signs.weight.grad.abs().sum(dim=1).gt(0).all()  # both signs are read
    assert module.model.sign_head.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("options", [{"softmax": "uniform", "num_sampled": 6}, {"softmax": "popularity", "num_sampled": 6}, {"ce_chunk_items": 7}])
def test_every_term_trains_under_a_sampled_or_chunked_softmax(options):
    unlikelihood = 0.0 if "softmax" in options else 1.0  # refused with a sampled softmax (its p is of a sampled denominator)
    module = make(beta=0.25, sign_weight=0.5, unlikelihood_weight=unlikelihood, **options)
    terms = module.loss_terms(batch())
    assert set(terms) == {"loss", "loss_next", "loss_contrast", "loss_sign"} and all(torch.isfinite(v) for v in terms.values())
    terms["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in module.parameters() if p.grad is not None)
    if "ce_chunk_items" in options:  # chunking changes memory, not values
        torch.testing.assert_close(terms["loss_next"], make(beta=0.25, sign_weight=0.5, unlikelihood_weight=1.0).loss_terms(batch())["loss_next"])


# -- argument checks --


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"family": "signed", "alpha": 0.45}, r"`alpha` \(0.45\) needs a negative encoder, which only family='sign_separated' has"),
        ({"family": "sign_separated", "sign_weight": 0.5}, r"`sign_weight` trains the sign head of family='signed' models"),
        ({"family": "whole_history", "alpha": 0.0, "sign_weight": 0.5}, r"`sign_weight` trains the sign head of family='signed' models"),
        ({"family": "sign_separated", "unlikelihood_weight": 0.5}, r"`unlikelihood_weight` applies to family='positives_unlikelihood' or 'signed' or 'whole_history'"),
        ({"family": "signed", "alpha": 0.0, "sign_weight": -1.0}, r"`sign_weight` must be 0 \(off\) or positive, got -1.0"),
        ({"family": "signed", "alpha": 0.0, "negative_scoring": 0.5}, r"`negative_scoring` acts on the negative encoder"),
        ({"family": "signed", "alpha": 0.0, "hard_negative_weight": 1.0}, r"`hard_negative_weight` and `contrast_negatives` apply to family='sign_separated'"),
    ],
)
def test_meaningless_signed_configurations_are_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        NegSeqModule(**{**SIZES, **kwargs})
