"""Loss terms: full-softmax next-item CE, unlikelihood, and the PNFRec / SASRec_c contrast."""

import math

import numpy as np
import pytest
import torch

from negseq.models.losses import contrastive_loss, label_log_probs, next_item_loss


def lse(*xs: float) -> float:
    return math.log(sum(math.exp(x) for x in xs))


# item table used by the hand examples: row 0 is deliberately non-zero and huge so that any
# leak of the padding row into the softmax would dominate the result
ITEMS = torch.tensor([[5.0, 5.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])


# -- label_log_probs --


def test_label_log_probs_excludes_padding_row():
    hidden = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    # logits for h = (1, 2) over items 1..3: 1, 2, 3; for h = 0: 0, 0, 0
    got = label_log_probs(hidden, torch.tensor([2, 3]), ITEMS)
    expected = torch.tensor([2.0 - lse(1.0, 2.0, 3.0), math.log(1 / 3)])
    torch.testing.assert_close(got, expected)


def test_label_log_probs_equals_log_softmax_over_items_1_to_n():
    gen = torch.Generator().manual_seed(0)
    hidden, items = torch.randn(5, 4, generator=gen), torch.randn(8, 4, generator=gen)
    labels = torch.tensor([1, 7, 3, 3, 5])
    reference = torch.log_softmax(hidden @ items[1:].T, dim=-1)[torch.arange(5), labels - 1]
    torch.testing.assert_close(label_log_probs(hidden, labels, items), reference)


# -- next_item_loss --

HIDDEN = torch.tensor([[[1.0, 2.0], [0.0, 0.0]]])  # B=1, T=2, D=2


def test_next_item_loss_hand_computed():
    loss = next_item_loss(HIDDEN, torch.tensor([[3, 1]]), ITEMS)
    # position 0: -log softmax(1, 2, 3)[3]; position 1: uniform over 3 items
    expected = ((lse(1.0, 2.0, 3.0) - 3.0) + math.log(3)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_next_item_loss_ignores_label_zero_positions():
    hidden = HIDDEN.clone().requires_grad_(True)
    loss = next_item_loss(hidden, torch.tensor([[2, 0]]), ITEMS)
    assert loss.item() == pytest.approx(lse(1.0, 2.0, 3.0) - 2.0, rel=1e-6)
    loss.backward()
    assert torch.all(hidden.grad[0, 1] == 0)  # the unlabelled position gets no gradient
    assert torch.any(hidden.grad[0, 0] != 0)
    # whatever sits at the unlabelled position does not matter
    other = torch.tensor([[[1.0, 2.0], [50.0, -9.0]]])
    assert next_item_loss(other, torch.tensor([[2, 0]]), ITEMS).item() == loss.item()


def test_next_item_loss_all_zero_labels_is_exactly_zero_with_finite_grad():
    hidden = torch.randn(2, 3, 2, requires_grad=True)
    items = ITEMS.clone().requires_grad_(True)
    loss = next_item_loss(hidden, torch.zeros(2, 3, dtype=torch.long), items)
    assert loss.item() == 0.0
    assert loss.requires_grad
    loss.backward()
    assert hidden.grad is not None and torch.isfinite(hidden.grad).all()
    assert torch.all(hidden.grad == 0)


def test_next_item_loss_unlikelihood_on_disliked_positions():
    w = 0.5
    labels = torch.tensor([[3, 1]])
    disliked = torch.tensor([[False, True]])
    loss = next_item_loss(HIDDEN, labels, ITEMS, disliked, unlikelihood_weight=w)
    # position 0 liked: CE; position 1 disliked: p(item 1) = 1/3 -> w * -log(1 - 1/3)
    expected = ((lse(1.0, 2.0, 3.0) - 3.0) + w * -math.log(1 - 1 / 3)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)

    # disliked position 0: p(item 3) = e^3 / (e + e^2 + e^3)
    p = math.exp(3.0) / (math.e + math.exp(2.0) + math.exp(3.0))
    loss = next_item_loss(HIDDEN, labels, ITEMS, torch.tensor([[True, True]]), unlikelihood_weight=2.0)
    assert loss.item() == pytest.approx((2.0 * -math.log(1 - p) + 2.0 * -math.log(2 / 3)) / 2, rel=1e-5)


def test_next_item_loss_unlikelihood_flag_on_unlabelled_position_is_ignored():
    loss = next_item_loss(HIDDEN, torch.tensor([[2, 0]]), ITEMS, torch.tensor([[False, True]]), unlikelihood_weight=0.7)
    assert loss.item() == pytest.approx(lse(1.0, 2.0, 3.0) - 2.0, rel=1e-6)


def test_next_item_loss_unlikelihood_weight_zero_is_plain_ce():
    gen = torch.Generator().manual_seed(1)
    hidden, items = torch.randn(3, 4, 5, generator=gen), torch.randn(10, 5, generator=gen)
    labels = torch.randint(0, 10, (3, 4), generator=gen)
    disliked = torch.rand(3, 4, generator=gen) < 0.5
    plain = next_item_loss(hidden, labels, items)
    assert next_item_loss(hidden, labels, items, disliked, unlikelihood_weight=0.0).item() == plain.item()
    assert next_item_loss(hidden, labels, items, disliked, unlikelihood_weight=1.0).item() != pytest.approx(plain.item())


def test_next_item_loss_matches_numpy_reference():
    rng = np.random.default_rng(2)
    hidden, items = rng.normal(size=(3, 5, 4)), rng.normal(size=(9, 4))
    labels = rng.integers(0, 9, size=(3, 5))
    disliked = rng.random((3, 5)) < 0.4
    w = 0.3
    logits = hidden @ items[1:].T  # (B, T, N)
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    per_position = []
    for b, t in zip(*np.nonzero(labels > 0)):
        lp = log_p[b, t, labels[b, t] - 1]
        per_position.append(w * -np.log1p(-np.exp(lp)) if disliked[b, t] else -lp)
    as_t = lambda x: torch.tensor(x, dtype=torch.float32)  # noqa: E731
    got = next_item_loss(as_t(hidden), torch.from_numpy(labels), as_t(items), torch.from_numpy(disliked), w)
    assert got.item() == pytest.approx(np.mean(per_position), rel=1e-5)
    got_ce = next_item_loss(as_t(hidden), torch.from_numpy(labels), as_t(items))
    ce = [-log_p[b, t, labels[b, t] - 1] for b, t in zip(*np.nonzero(labels > 0))]
    assert got_ce.item() == pytest.approx(np.mean(ce), rel=1e-5)


# -- contrastive_loss --

# one user, two queries, two negatives (D=2)
Q = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
POS = torch.tensor([[[2.0, 0.0], [0.0, 1.0]]])
NEGS = torch.tensor([[[1.0, 1.0], [-1.0, 0.0]]])
# q0: s+ = 2, s_m = 1, -1;  q1: s+ = 1, s_m = 1, 0
L0 = lse(2.0, 1.0, -1.0) - 2.0
L1 = lse(1.0, 1.0, 0.0) - 1.0


def test_contrastive_loss_pnfrec_hand_computed():
    loss = contrastive_loss(Q, POS, NEGS, torch.tensor([[True, True]]), torch.tensor([[True, True]]))
    assert loss.item() == pytest.approx((L0 + L1) / 2, rel=1e-6)
    assert L0 == pytest.approx(-math.log(math.exp(2) / (math.exp(2) + math.exp(1) + math.exp(-1))))


def test_contrastive_loss_only_valid_queries_count():
    loss = contrastive_loss(Q, POS, NEGS, torch.tensor([[False, True]]), torch.tensor([[True, True]]))
    assert loss.item() == pytest.approx(L1, rel=1e-6)


def test_contrastive_loss_excludes_padding_negatives():
    negs = torch.cat([NEGS, torch.tensor([[[10.0, 10.0]]])], dim=1)  # M = 3, the third is padding
    valid = torch.tensor([[True, True, False]])
    loss = contrastive_loss(Q, POS, negs, torch.tensor([[True, True]]), valid)
    assert loss.item() == pytest.approx((L0 + L1) / 2, rel=1e-6)
    # only the second negative valid: q0 -> s_m = -1, q1 -> s_m = 0
    loss = contrastive_loss(Q, POS, negs, torch.tensor([[True, True]]), torch.tensor([[False, True, False]]))
    assert loss.item() == pytest.approx(((lse(2.0, -1.0) - 2.0) + (lse(1.0, 0.0) - 1.0)) / 2, rel=1e-6)


def test_contrastive_loss_user_without_negatives_gives_exact_zero():
    loss = contrastive_loss(Q, POS, NEGS, torch.tensor([[True, True]]), torch.tensor([[False, False]]))
    assert loss.item() == 0.0


def test_contrastive_loss_mean_over_users_with_and_without_negatives():
    queries = torch.cat([Q, torch.tensor([[[3.0, 1.0], [1.0, -2.0]]])])  # user 1: arbitrary queries
    positives = torch.cat([POS, torch.tensor([[[0.5, 0.5], [2.0, 2.0]]])])
    negatives = torch.cat([NEGS, torch.tensor([[[4.0, 4.0], [1.0, 1.0]]])])
    query_valid = torch.tensor([[True, False], [True, True]])
    negative_valid = torch.tensor([[True, True], [False, False]])  # user 1 has no negatives
    loss = contrastive_loss(queries, positives, negatives, query_valid, negative_valid)
    # three valid queries: user 0's q0 (L0) and user 1's two queries (0 each)
    assert loss.item() == pytest.approx((L0 + 0.0 + 0.0) / 3, rel=1e-6)


def test_contrastive_loss_negatives_stay_within_their_user():
    # user 1's negative is a perfect match for user 0's query: it must not enter user 0's term
    queries = torch.cat([Q, Q])
    positives = torch.cat([POS, POS])
    negatives = torch.cat([NEGS, torch.tensor([[[100.0, 100.0], [100.0, 100.0]]])])
    query_valid = torch.tensor([[True, True], [False, False]])
    loss = contrastive_loss(queries, positives, negatives, query_valid, torch.ones(2, 2, dtype=torch.bool))
    assert loss.item() == pytest.approx((L0 + L1) / 2, rel=1e-6)


def test_contrastive_loss_cosine_temperature_hand_computed():
    q = torch.tensor([[[3.0, 4.0]]])  # unit: (0.6, 0.8)
    pos = torch.tensor([[[5.0, 0.0]]])  # cos = 0.6
    negs = torch.tensor([[[0.0, 2.0], [-1.0, 0.0]]])  # cos = 0.8, -0.6
    loss = contrastive_loss(q, pos, negs, torch.tensor([[True]]), torch.tensor([[True, True]]), temperature=0.1, cosine=True)
    expected = lse(6.0, 8.0, -6.0) - 6.0
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    # same inputs as plain dot products at temperature 0.1 differ: normalisation matters
    dot = contrastive_loss(q, pos, negs, torch.tensor([[True]]), torch.tensor([[True, True]]), temperature=0.1)
    assert dot.item() == pytest.approx(lse(150.0, 80.0, -30.0) - 150.0, abs=1e-4)


def test_contrastive_loss_temperature_scales_dot_products():
    loss = contrastive_loss(Q, POS, NEGS, torch.tensor([[True, True]]), torch.tensor([[True, True]]), temperature=2.0)
    expected = ((lse(1.0, 0.5, -0.5) - 1.0) + (lse(0.5, 0.5, 0.0) - 0.5)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_contrastive_loss_huge_dot_products_do_not_overflow():
    q = torch.tensor([[[100.0, 0.0]]], requires_grad=True)
    pos = torch.tensor([[[100.0, 0.0]]])  # s+ = 1e4
    negs = torch.tensor([[[101.0, 0.0], [99.0, 0.0]]])  # s_m = 10100, 9900
    loss = contrastive_loss(q, pos, negs, torch.tensor([[True]]), torch.tensor([[True, True]]))
    # log(e^1e4 + e^10100 + e^9900) - 1e4 = 100 + log(1 + e^-100 + e^-200) = 100 in fp32
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(100.0, abs=1e-3)
    loss.backward()
    assert torch.isfinite(q.grad).all()


def test_contrastive_loss_no_valid_query_is_zero_with_finite_grads():
    q = torch.randn(2, 3, 4, requires_grad=True)
    pos = torch.randn(2, 3, 4, requires_grad=True)
    negs = torch.randn(2, 2, 4, requires_grad=True)
    loss = contrastive_loss(q, pos, negs, torch.zeros(2, 3, dtype=torch.bool), torch.ones(2, 2, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(q.grad).all() and torch.all(q.grad == 0)
    for tensor in (pos, negs):
        assert tensor.grad is None or torch.isfinite(tensor.grad).all()


def test_contrastive_loss_gradient_finite_for_user_without_negatives():
    q = Q.clone().requires_grad_(True)
    negs = NEGS.clone().requires_grad_(True)
    loss = contrastive_loss(q, POS, negs, torch.tensor([[True, True]]), torch.tensor([[False, False]]))
    loss.backward()
    assert torch.isfinite(q.grad).all() and torch.isfinite(negs.grad).all()
    assert torch.all(negs.grad == 0)


@pytest.mark.parametrize("cosine", [False, True])
def test_contrastive_loss_matches_numpy_reference(cosine):
    rng = np.random.default_rng(3)
    B, T, M, D = 3, 4, 5, 6
    q, p, n = rng.normal(size=(B, T, D)), rng.normal(size=(B, T, D)), rng.normal(size=(B, M, D))
    query_valid = rng.random((B, T)) < 0.7
    negative_valid = rng.random((B, M)) < 0.6
    negative_valid[2] = False  # a user without negatives
    temperature = 0.1 if cosine else 1.0
    if cosine:
        unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
        q, p, n = unit(q), unit(p), unit(n)
    per_query = []
    for b in range(B):
        for t in range(T):
            if not query_valid[b, t]:
                continue
            s_pos = q[b, t] @ p[b, t] / temperature
            s_neg = [q[b, t] @ n[b, m] / temperature for m in range(M) if negative_valid[b, m]]
            per_query.append(-np.log(np.exp(s_pos) / (np.exp(s_pos) + np.sum(np.exp(s_neg)))))
    as_t = lambda x: torch.tensor(x, dtype=torch.float32)  # noqa: E731
    got = contrastive_loss(
        as_t(q), as_t(p), as_t(n), torch.from_numpy(query_valid), torch.from_numpy(negative_valid), temperature, cosine
    )
    assert got.item() == pytest.approx(np.mean(per_query), rel=1e-5)
