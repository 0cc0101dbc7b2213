"""Order keys: a total (score desc, id asc) order that survives a round trip; exact top-k, dislike demotion and the
item-polarity prior."""

from __future__ import annotations

import math

import pytest
import torch

from negseq.errors import ConfigError
from negseq.models import ranking_weights
from negseq.models.ranking import decode_keys, exact_scores, order_keys, score_block, score_error, top_k
from tests.rank_oracle import sorted_ranks


def test_keys_round_trip_and_order_scores_then_ids():
    scores = torch.tensor([[-float("inf"), -2.5, -0.0, 0.0, 1e-30, 3.0, 3.0, 7.25]])
    ids = torch.tensor([9, 4, 5, 6, 2, 8, 1, 3])
    keys = order_keys(scores, ids)
    decoded_scores, decoded_ids = decode_keys(keys)
    assert torch.equal(decoded_ids, ids[None]) and torch.equal(decoded_scores, scores)
    order = keys.argsort(dim=1, descending=True)[0]
    # 7.25, then the tied 3.0s by id (1 before 8), then 1e-30, 0.0, -0.0, -2.5, -inf
    assert ids[order].tolist() == [3, 1, 8, 2, 6, 5, 4, 9]


def brute_force_top_k(users, items, seen, k, demote=None, bias=None):
    """Every item's exact score, seen and padding removed, every key sorted: the reference top-k."""
    every = torch.arange(len(items)).expand(len(users), -1)
    scores = exact_scores(users, items, every, demote, bias)
    excluded = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, seen, True)
    excluded[:, 0] = True
    keys = order_keys(scores.masked_fill(excluded, -float("inf")), every).sort(dim=1, descending=True).values[:, :k]
    scores, ids = decode_keys(keys)
    return scores, torch.where(torch.isfinite(scores), ids, 0)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_top_k_picks_the_smallest_ids_among_ties_at_the_cut(precision):
    # ids 1..6 score their row: top-3 = 2, then two of the four tied 1.0s (1 and 3, the smallest ids)
    items = torch.tensor([[0.0], [1.0], [5.0], [1.0], [1.0], [1.0], [0.5]])
    for block in (2, 7):
        scores, ids = top_k(torch.ones(1, 1), items, torch.zeros(1, 1, dtype=torch.long), 3, block, precision=precision)
        assert ids.tolist() == [[2, 1, 3]] and scores.tolist() == [[5.0, 1.0, 1.0]], block


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_top_k_equals_sorting_every_exact_key_on_random_and_near_tie_rows(precision):
    """Random scores; exact ties and near-ties (1 ulp apart, below bf16's resolution) across the cut, more of them than
    the candidates re-scored; seen items; a catalogue smaller than k plus the seen items; whole rows and item blocks."""
    generator = torch.Generator().manual_seed(5)
    items = torch.randn(301, 8, generator=generator)
    items[0] = 0.0
    items[100:200] = items[100]  # 100 identical items: exact ties
    items[200:300] = items[200] * (1 + torch.arange(100)[:, None] * 2.0**-23)  # 100 items a few ulp apart
    users = torch.randn(40, 8, generator=generator)
    users[:10] = items[100]  # their top-k cut falls inside the identical items
    users[10:20] = items[200]  # ... inside the near-ties
    seen = torch.randint(0, 301, (40, 12), generator=generator)
    for k in (1, 10, 50):
        expected = brute_force_top_k(users, items, seen, k)
        for block in (64, 301, 2048):
            scores, ids = top_k(users, items, seen, k, block, precision=precision)
            assert torch.equal(ids, expected[1]) and torch.equal(scores, expected[0]), (k, block)
    small = items[:6]  # 5 items, up to 3 seen: fewer than k recommendable
    scores, ids = top_k(users, small, seen % 6, 10, precision=precision)
    assert torch.equal(ids, brute_force_top_k(users, small, seen % 6, 10)[1])
    assert ((ids == 0) == torch.isinf(scores)).all() and (ids == 0).any()


def test_top_k_with_dislike_demotion_equals_sorting_every_exact_key():
    generator = torch.Generator().manual_seed(6)
    items, users = torch.randn(501, 16, generator=generator), torch.randn(24, 16, generator=generator)
    demote = 0.7 * torch.nn.functional.normalize(torch.randn(24, 5, 16, generator=generator), dim=2)
    demote[:, :2] = 0.0  # empty slots
    seen = torch.randint(0, 501, (24, 7), generator=generator)
    expected = brute_force_top_k(users, items, seen, 10, demote)
    for precision in ("fp32", "bf16"):
        for block in (100, 2048):
            assert torch.equal(top_k(users, items, seen, 10, block, demote, precision)[1], expected[1]), (precision, block)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_score_error_bounds_every_approximate_score(precision):
    """|approximate - exact| <= eps * (|u| |e_j| + max|d| + max|b|) for every item j (so with max|e|, as the certificate
    uses it) on vectors of mixed magnitudes (heavy tails), with and without demotion and a prior's bias; the bound is within
    10x of the worst error seen."""
    generator = torch.Generator().manual_seed(7)
    dim = 64
    items = torch.randn(4001, dim, generator=generator) * torch.exp(2 * torch.randn(4001, 1, generator=generator))
    users = torch.randn(64, dim, generator=generator) ** 3 * 10.0
    demote = 2.0 * torch.nn.functional.normalize(torch.randn(64, 5, dim, generator=generator), dim=2)
    bias = 3.0 * torch.log(torch.rand(4001, generator=generator))  # log-rates times a weight: <= 0, heavy below
    every = torch.arange(1, 4001).expand(64, -1)
    eps = score_error(dim, precision)
    worst = 0.0
    for weights, prior in ((None, None), (demote, None), (None, bias), (demote, bias)):
        approx = score_block(users, items, torch.zeros(64, 1, dtype=torch.long), 1, 4001, weights, precision, prior).double()
        exact = exact_scores(users, items, every, weights, prior).double()
        scale = users.double().norm(dim=1)[:, None] * items[1:].double().norm(dim=1)  # (B, C): per item, the stronger statement
        if weights is not None:
            scale = scale + weights.double().norm(dim=2).amax(dim=1)[:, None]
        if prior is not None:
            scale = scale + prior.double().abs().max()
        relative = ((approx - exact).abs() / scale).max().item()
        assert relative <= eps, (weights is None, prior is None, relative, eps)
        worst = max(worst, relative)
    assert worst > eps / 10 if precision == "bf16" else worst > 0


def test_exact_scores_add_the_bias_of_each_item_to_the_fp64_dot_product():
    items = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # ids 0 (padding) .. 3
    bias = torch.tensor([0.0, 0.5, -1.0, -0.25])
    users = torch.tensor([[1.0, 2.0], [-1.0, 0.5]])
    ids = torch.tensor([[2, 1, 3], [3, 3, 1]])
    # dots: user 0 -> items 2, 1, 3 = 2, 1, 3; user 1 -> 3, 3, 1 = -0.5, -0.5, -1
    expected = [[2 - 1.0, 1 + 0.5, 3 - 0.25], [-0.5 - 0.25, -0.5 - 0.25, -1 + 0.5]]
    assert exact_scores(users, items, ids, bias=bias).tolist() == expected
    generator = torch.Generator().manual_seed(8)
    users, items = torch.randn(6, 16, generator=generator), torch.randn(51, 16, generator=generator)
    bias = torch.randn(51, generator=generator)
    ids = torch.randint(0, 51, (6, 20), generator=generator)
    by_hand = (users.double()[:, None, :] * items.double()[ids]).sum(dim=2) + bias.double()[ids]  # (B, C) in fp64
    assert torch.equal(exact_scores(users, items, ids, bias=bias), by_hand.float())


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_top_k_with_a_prior_bias_equals_sorting_every_exact_key(precision, monkeypatch):
    """A per-item bias added to every user's scores: random rows with and without demotion; and rows whose cut falls in
    items the bias makes (nearly) tie, below both precisions' resolution, so that the certificate fails and the whole
    block is re-scored exactly (checked: some exact re-scoring spans a whole block)."""
    import negseq.models.ranking

    generator = torch.Generator().manual_seed(9)
    items, users = torch.randn(401, 16, generator=generator), torch.randn(30, 16, generator=generator)
    bias = 2.0 * torch.log(torch.rand(401, generator=generator))  # a weight times log-rates: <= 0
    demote = 0.7 * torch.nn.functional.normalize(torch.randn(30, 5, 16, generator=generator), dim=2)
    seen = torch.randint(0, 401, (30, 7), generator=generator)
    # user 0's dots plus the bias of items 50..149 all come to one value above every other item's score (up to fp32's
    # rounding of the bias): near-ties at any cut k <= 100 of user 0 (the other users score them by their own dots)
    dots = users[0].double() @ items.double().T  # (N + 1,)
    level = float((dots + bias.double()).max()) + 1.0
    bias[50:150] = (level - dots[50:150]).float()
    rescored = []
    exact = negseq.models.ranking.exact_scores
    monkeypatch.setattr(negseq.models.ranking, "exact_scores", lambda users, items, ids, *rest: rescored.append(ids.shape[1]) or exact(users, items, ids, *rest))
    for k in (10, 60):
        for weights in (None, demote):
            expected = brute_force_top_k(users, items, seen, k, weights, bias)
            assert not torch.equal(expected[1], brute_force_top_k(users, items, seen, k, weights)[1])  # the bias moves the lists
            for block in (100, 401, 2048):
                scores, ids = top_k(users, items, seen, k, block, weights, precision, bias)
                assert torch.equal(ids, expected[1]) and torch.equal(scores, expected[0]), (k, weights is None, block)
    assert max(rescored) > 60 + negseq.models.ranking.EXTRA_CANDIDATES  # the certification path ran

def test_a_target_in_the_top_k_counts_at_the_rank_it_is_shown_at():
    """A near-tie below the target by a smaller id: a tolerance count put it ahead (rank 11) while the exact keys show the
    target 10th. The fit's rank (its position in the recommendations) and the sorted definition agree: one convention."""
    from negseq.models.ranking import ranks_in

    scores = torch.tensor([0.0] + [10.0] * 9 + [1.0 - 1e-6, 1.0, -5.0])  # items 1..9 far ahead, 10 just below 11 (the target)
    items = scores[:, None]  # (N + 1, 1): with the user vector [1.0], each item's score is its row
    users, seen, target = torch.ones(1, 1), torch.zeros(1, 1, dtype=torch.long), torch.tensor([11])
    assert sorted_ranks(scores[None], target).tolist() == [10.0]
    for block in (1, 4, 13):
        top_items = top_k(users, items, seen, k=10, block_items=block)[1]
        ranks = ranks_in(top_items, target)
        assert top_items[0, 9].item() == 11 and ranks.tolist() == [10.0]


def test_ranks_are_the_positions_in_the_top_k_and_inf_elsewhere():
    from negseq.models.ranking import ranks_in

    generator = torch.Generator().manual_seed(3)
    users, items = torch.randn(32, 4, generator=generator), torch.randn(41, 4, generator=generator)
    seen = torch.randint(0, 41, (32, 3), generator=generator)
    targets = torch.cat([seen[:4, 0], torch.randint(0, 41, (28,), generator=generator)])  # some seen (or padding) targets
    top_items = top_k(users, items, seen, k=7, block_items=5)[1]
    ranks = ranks_in(top_items, targets)
    for row in range(32):
        shown = top_items[row].tolist()
        expected = shown.index(targets[row].item()) + 1 if targets[row].item() in shown and targets[row] > 0 else float("inf")
        assert ranks[row].item() == expected
    assert torch.isinf(ranks[:4]).all()  # a seen item is never recommended, so never ranked


def test_dislike_demotion_subtracts_lambda_times_the_highest_positive_cosine_by_hand():
    from negseq.models.recommender import SequentialRecommender

    items = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 3.0], [1.0, 1.0], [-1.0, 0.0]])  # ids 0 (padding) .. 4
    users = torch.tensor([[1.0, 1.0]])
    unit_disliked = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])  # item 1 disliked, one empty slot
    block = score_block(users, items, torch.zeros(1, 1, dtype=torch.long), 0, 5, 2.0 * unit_disliked)
    # dot products 2, 3, 2, -1; cosines to item 1: 1, 0, 1/sqrt(2), -1 (clamped to 0: never a promotion)
    expected = [2 - 2.0, 3 - 0.0, 2 - 2.0 / 2**0.5, -1 - 0.0]
    assert block[0, 1:].tolist() == pytest.approx(expected) and block[0, 0] == -float("inf")

    model = SequentialRecommender(4, max_len=3, dim=2, dislike_demotion=2.0, demotion_window=1)
    with torch.no_grad():
        model.items.weight.copy_(items)
    demote = model.demotion(torch.tensor([[1, 3]]))  # the window keeps the newest dislike only: item 3
    assert demote.shape == (1, 1, 2) and demote[0, 0].tolist() == pytest.approx([2.0 / 2**0.5, 2.0 / 2**0.5])
    ranking_weights.write(model, {"dislike_demotion": 0.0})
    assert model.demotion(torch.tensor([[1, 3]])) is None


def test_demotion_decay_weighs_the_r_th_newest_dislike_by_gamma_to_the_r():
    from negseq.models.recommender import SequentialRecommender

    items = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # ids 0 (padding) .. 3
    model = SequentialRecommender(3, max_len=4, dim=2, dislike_demotion=2.0, demotion_window=3, demotion_decay=0.5)
    with torch.no_grad():
        model.items.weight.copy_(items)
    demote = model.demotion(torch.tensor([[0, 1, 2]]))  # padding, then item 1 (one step old), then item 2 (the newest)
    assert demote[0].flatten().tolist() == pytest.approx([0.0, 0.0, 2.0 * 0.5, 0.0, 0.0, 2.0])
    # item 3 is as close to both dislikes (cosine 1/sqrt(2)): the newest one's full weight counts, 2/sqrt(2)
    block = score_block(torch.tensor([[1.0, 1.0]]), items, torch.zeros(1, 1, dtype=torch.long), 0, 4, demote)
    assert block[0, 1:].tolist() == pytest.approx([1 - 1.0, 1 - 2.0, 2 - 2.0 / 2**0.5])
    with pytest.raises(ConfigError, match="demotion_decay in \\(0, 1\\]"):
        SequentialRecommender(3, max_len=4, dim=2, demotion_decay=0.0)


def test_item_polarity_is_the_log_of_laplace_smoothed_like_rates_by_hand():
    liked, events = torch.tensor([0.0, 3.0, 0.0, 1.0]), torch.tensor([0.0, 4.0, 2.0, 1.0])
    # (liked + 1) / (events + 2): padding and unseen items 1/2, then 4/6, 1/4, 2/3
    expected = [math.log(1 / 2), math.log(4 / 6), math.log(1 / 4), math.log(2 / 3)]
    polarity = ranking_weights.item_polarity(liked, events)
    assert polarity.dtype == torch.float32 and polarity.tolist() == pytest.approx(expected, rel=1e-7)


def test_a_negative_polarity_prior_is_refused():
    ranking_weights.check({"polarity_prior": 0.0}, negative_encoder=False)
    ranking_weights.check({"polarity_prior": 2.0}, negative_encoder=False)  # any model: the prior reads no encoder
    with pytest.raises(ConfigError, match="candidate: polarity_prior must be >= 0.*got -0.5"):
        ranking_weights.check({"polarity_prior": -0.5}, negative_encoder=False, flag="candidate: ")


def test_item_bias_is_the_weight_times_the_log_rates_and_none_at_zero():
    from negseq.models.recommender import SequentialRecommender

    model = SequentialRecommender(3, max_len=3, dim=2)
    assert model.item_polarity.tolist() == [0.0] * 4 and model.item_bias() is None  # before the training data fills them
    model.item_polarity.copy_(torch.tensor([math.log(1 / 2), math.log(4 / 6), math.log(1 / 4), math.log(2 / 3)]))
    assert model.item_bias() is None and model.item_bias(0.0) is None
    assert torch.equal(model.item_bias(3.0), 3.0 * model.item_polarity)
    ranking_weights.write(model, {"polarity_prior": 1.5})
    assert torch.equal(model.item_bias(), 1.5 * model.item_polarity)


def test_sign_scoring_adds_the_sign_heads_logit_without_its_constant_to_every_score():
    """score_j + lambda * w . (h * e_j), computed by hand from the head, equals the user vector h * (1 + lambda * w)'s scores."""
    from negseq.models.recommender import SequentialRecommender

    torch.manual_seed(0)
    model = SequentialRecommender(20, max_len=5, dim=8, negative_encoder=False, signed=True, sign_head=True).eval()
    history = torch.tensor([[0, 3, -4, 5, 6], [0, 0, 0, -2, 7]])
    with torch.no_grad():
        hidden, items = model(history).double(), model.items.weight.double()
        logits = (hidden[:, None, :] * items[None] * model.sign_head.weight[0].double()).sum(-1)  # (B, N + 1), w . (h * e_j)
        ranking_weights.write(model, {"sign_scoring": 2.5})
        assert torch.allclose(model(history).double() @ items.T, hidden @ items.T + 2.5 * logits, atol=1e-5)


def test_sign_scoring_is_refused_without_a_sign_head():
    from negseq.models.recommender import SequentialRecommender

    with pytest.raises(ConfigError, match="sign_scoring"):
        SequentialRecommender(20, max_len=5, dim=8, negative_encoder=False, sign_scoring=1.0)
    model = SequentialRecommender(20, max_len=5, dim=8, negative_encoder=False)
    with pytest.raises(ConfigError, match="sign head"):
        ranking_weights.write(model, {"sign_scoring": 1.0})


def test_a_checkpoint_written_before_the_prior_ranks_without_it():
    """fill_missing: the weights a checkpoint lacks come from its hyper-parameters (else 0), the log-rates are zeros of
    the item table's length; what the checkpoint has stays."""
    old = {"state_dict": {"model.items.weight": torch.randn(6, 4), "model.negative_scoring": torch.tensor(0.5)}, "hyper_parameters": {"dislike_demotion": 1.0}}
    ranking_weights.fill_missing(old)
    state = old["state_dict"]
    assert {name: float(state[f"model.{name}"]) for name in ranking_weights.WEIGHTS} == {
        "negative_scoring": 0.5, "dislike_demotion": 1.0, "polarity_prior": 0.0, "sign_scoring": 0.0,
    }
    assert torch.equal(state["model.item_polarity"], torch.zeros(6))
    rates = torch.tensor([-0.7, -0.1, -2.0])
    new = {"state_dict": {"model.items.weight": torch.randn(3, 4), "model.polarity_prior": torch.tensor(2.0), "model.item_polarity": rates}}
    ranking_weights.fill_missing(new)
    assert float(new["state_dict"]["model.polarity_prior"]) == 2.0 and new["state_dict"]["model.item_polarity"] is rates
