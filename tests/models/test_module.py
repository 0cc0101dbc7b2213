"""NegSeqModule: composition of the loss terms for every variant, scoring and top-k."""

import math

import pytest
import torch

from negseq.errors import ConfigError
from negseq.models import inference, ranking_weights
from negseq.models.losses import contrastive_loss, label_log_probs, next_item_loss
from negseq.training.module import NegSeqModule
from tests.rank_oracle import served_scores, sorted_ranks


def rank(module, sequences, seen, targets, negatives=None):
    """The module's ranking of ``targets`` among its top ``k`` (ranks, top scores, top ids), as its eval steps rank."""
    batch = {"positives": sequences, "seen": seen, "target": targets, **({} if negatives is None else {"negatives": negatives})}
    ranked = inference.rank(module.model, batch, module.hparams.k, "positives", module.hparams.score_block_items)
    return ranked.ranks, ranked.scores, ranked.items

SIZES = dict(num_items=20, num_train_items=20, max_len=5, dim=8, dropout=0.0)


def make(**kwargs) -> NegSeqModule:
    torch.manual_seed(0)
    return NegSeqModule(**{**SIZES, **kwargs})


def lse(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


# (B, L + 1) = (3, 6), left-padded
POSITIVES = torch.tensor(
    [
        [0, 0, 3, 5, 7, 9],
        [0, 0, 0, 0, 2, 4],
        [0, 0, 0, 0, 0, 6],  # a single liked item: no positive label
    ]
)
NEGATIVES = torch.tensor(
    [
        [0, 0, 0, 11, 12, 13],
        [0, 0, 0, 0, 0, 0],  # no negatives at all
        [0, 0, 0, 0, 14, 15],
    ]
)
# next-item labels, written out by hand: 0 wherever the input position is padding
POS_INPUTS = POSITIVES[:, :-1]
POS_LABELS = torch.tensor([[0, 0, 5, 7, 9], [0, 0, 0, 0, 4], [0, 0, 0, 0, 0]])
NEG_INPUTS = NEGATIVES[:, :-1]
NEG_LABELS = torch.tensor([[0, 0, 0, 12, 13], [0, 0, 0, 0, 0], [0, 0, 0, 0, 15]])

HISTORY = torch.tensor(
    [
        [0, 3, 11, 12, 5, 13],
        [0, 0, 2, 4, 8, 6],
        [0, 0, 0, 0, 16, 17],
    ]
)
HISTORY_POSITIVE = torch.tensor(
    [
        [False, True, False, False, True, False],
        [False, False, True, False, True, True],
        [False, False, False, False, False, True],
    ]
)


def batch(**overrides) -> dict[str, torch.Tensor]:
    data = {"positives": POSITIVES, "negatives": NEGATIVES, "history": HISTORY, "history_positive": HISTORY_POSITIVE}
    return {**data, **overrides}


# -- construction --


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(family="whole_history", alpha=0.45, beta=0.0), "alpha"),
        (dict(family="whole_history"), "alpha"),  # the default alpha is for PNFRec
        (dict(family="sign_separated", unlikelihood_weight=0.5), "unlikelihood_weight"),
        (dict(temperature=0.0), "temperature"),
        (dict(temperature=-0.1), "temperature"),
        (dict(family="mixed"), "family"),
        (dict(history="mixed"), "family"),  # the deprecated name, looked up the same way
        (dict(alpha=0.0, identical_start=True), "identical_start"),
        (dict(family="whole_history", alpha=0.0, unlikelihood_weight=0.5, softmax="uniform"), "`unlikelihood_weight` needs softmax='full'"),
        (dict(family="whole_history", alpha=0.0, unlikelihood_weight=0.5, softmax="popularity"), "`unlikelihood_weight` needs softmax='full'"),
    ],
)
def test_invalid_configurations_raise(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        make(**kwargs)


def test_negative_encoder_exists_only_with_alpha():
    assert make(alpha=0.45).model.negative_encoder is not None
    assert make(alpha=0.0, beta=0.25).model.negative_encoder is None
    assert make(family="whole_history", alpha=0.0).model.negative_encoder is None


def test_identical_start_copies_the_positive_encoder_and_draws_nothing_else_differently():
    torch.manual_seed(0)
    independent = make().model
    torch.manual_seed(0)
    identical = make(identical_start=True).model
    same = lambda a, b: all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))  # noqa: E731
    assert same(identical.negative_encoder, identical.encoder) and not same(independent.negative_encoder, independent.encoder)
    assert same(identical.encoder, independent.encoder) and same(identical.items, independent.items)


def test_padding_row_of_item_table_is_zero():
    module = make()
    assert torch.all(module.model.items.weight[0] == 0)
    assert module.model.items.weight.shape == (21, 8)


# -- PNFRec loss --


def hand_contrast(hidden: torch.Tensor, items: torch.Tensor) -> float:
    """PNFRec contrast by explicit loops over the hand batch: queries where POS_LABELS > 0, negatives NEG_INPUTS."""
    per_query = []
    for b in range(3):
        negatives = [int(m) for m in NEG_INPUTS[b] if m > 0]
        for t in range(5):
            label = int(POS_LABELS[b, t])
            if not label:
                continue
            h = hidden[b, t]
            s_pos = float(h @ items[label])
            s_neg = [float(h @ items[m]) for m in negatives]
            per_query.append(lse([s_pos, *s_neg]) - s_pos)
    # user 0: 3 queries against {11, 12}; user 1: 1 query, no negatives -> 0; user 2: none
    assert len(per_query) == 4 and per_query[3] == 0.0
    return sum(per_query) / len(per_query)


def test_pnfrec_loss_terms_recomputed():
    module = make(alpha=0.45, beta=0.25)
    terms = module.loss_terms(batch())
    assert set(terms) == {"loss", "loss_pos", "loss_neg", "loss_contrast"}
    items = module.model.items.weight
    with torch.no_grad():
        hidden = module.model.encode(POS_INPUTS)
        negative_hidden = module.model.encode(NEG_INPUTS, module.model.negative_encoder)
        loss_pos = next_item_loss(hidden, POS_LABELS, items)
        loss_neg = 0.45 * next_item_loss(negative_hidden, NEG_LABELS, items)
        contrast = contrastive_loss(hidden, module.model.items(POS_LABELS), module.model.items(NEG_INPUTS), POS_LABELS > 0, NEG_INPUTS > 0)
        expected_contrast = hand_contrast(hidden, items)
    torch.testing.assert_close(terms["loss_pos"], loss_pos)
    torch.testing.assert_close(terms["loss_neg"], loss_neg)
    torch.testing.assert_close(terms["loss_contrast"], 0.25 * contrast)
    assert terms["loss_contrast"].item() == pytest.approx(0.25 * expected_contrast, rel=1e-5)
    torch.testing.assert_close(terms["loss"], terms["loss_pos"] + terms["loss_neg"] + terms["loss_contrast"])


def test_pnfrec_positive_ce_by_hand():
    # CE_pos averages over the 4 labelled positions (5, 7, 9 for user 0; 4 for user 1)
    module = make(alpha=0.0, beta=0.0)
    with torch.no_grad():
        hidden = module.model.encode(POS_INPUTS)
        positions = [(0, 2, 5), (0, 3, 7), (0, 4, 9), (1, 4, 4)]
        items = module.model.items.weight
        ce = [lse([float(hidden[b, t] @ items[i]) for i in range(1, 21)]) - float(hidden[b, t] @ items[label]) for b, t, label in positions]
        terms = module.loss_terms(batch())
    assert terms["loss_pos"].item() == pytest.approx(sum(ce) / 4, rel=1e-5)


def test_first_item_of_a_sequence_is_not_a_label():
    """Only the item after a real input is a label: a one-item sequence contributes nothing."""
    module = make(alpha=0.45, beta=0.0)
    single = batch(positives=torch.tensor([[0, 0, 0, 0, 0, 6]]), negatives=torch.tensor([[0, 0, 0, 0, 0, 14]]))
    terms = module.loss_terms(single)
    assert terms["loss_pos"].item() == 0.0
    assert terms["loss_neg"].item() == 0.0
    # adding user 2 (one positive, two negatives) leaves CE_pos unchanged
    with torch.no_grad():
        two = module.loss_terms(batch(positives=POSITIVES[:2], negatives=NEGATIVES[:2]))
        three = module.loss_terms(batch())
    assert three["loss_pos"].item() == pytest.approx(two["loss_pos"].item(), rel=1e-6)


def test_alpha_beta_zero_is_plain_ce_on_positives():
    module = make(alpha=0.0, beta=0.0)
    assert module.model.negative_encoder is None
    terms = module.loss_terms(batch())
    assert set(terms) == {"loss", "loss_pos"}
    with torch.no_grad():
        expected = next_item_loss(module.model.encode(POS_INPUTS), POS_LABELS, module.model.items.weight)
    torch.testing.assert_close(terms["loss"], expected, rtol=0, atol=0)
    # negatives play no part at all
    other = module.loss_terms(batch(negatives=torch.randint(1, 21, (3, 6))))
    assert other["loss"].item() == terms["loss"].item()


def test_contrast_only_variant():
    module = make(alpha=0.0, beta=0.25)
    terms = module.loss_terms(batch())
    assert set(terms) == {"loss", "loss_pos", "loss_contrast"}
    with torch.no_grad():
        expected = hand_contrast(module.model.encode(POS_INPUTS), module.model.items.weight)
    assert terms["loss_contrast"].item() == pytest.approx(0.25 * expected, rel=1e-5)


def test_pnfrec_contrast_passes_temperature_and_cosine():
    module = make(alpha=0.0, beta=0.5, temperature=0.5, cosine=True)
    terms = module.loss_terms(batch())
    with torch.no_grad():
        hidden = module.model.encode(POS_INPUTS)
        unit = torch.nn.functional.normalize
        h, e = unit(hidden[0, 2], dim=-1), unit(module.model.items.weight, dim=-1)
        # user 0's first query (t=2, next liked 5) against its negative inputs 11, 12, by hand
        first = lse([float(h @ e[i]) / 0.5 for i in (5, 11, 12)]) - float(h @ e[5]) / 0.5
        expected = contrastive_loss(hidden, module.model.items(POS_LABELS), module.model.items(NEG_INPUTS), POS_LABELS > 0, NEG_INPUTS > 0, 0.5, True)
        per_query = contrastive_loss(
            hidden[:1, 2:3], module.model.items(POS_LABELS[:1, 2:3]), module.model.items(NEG_INPUTS[:1]), torch.tensor([[True]]), NEG_INPUTS[:1] > 0, 0.5, True
        )
    assert per_query.item() == pytest.approx(first, rel=1e-5)
    torch.testing.assert_close(terms["loss_contrast"], 0.5 * expected)


def test_batch_without_negatives_gives_finite_loss_and_grads():
    module = make(alpha=0.45, beta=0.25)
    terms = module.loss_terms(batch(negatives=torch.zeros(3, 6, dtype=torch.long)))
    assert terms["loss_neg"].item() == 0.0
    assert terms["loss_contrast"].item() == 0.0
    assert torch.isfinite(terms["loss"])
    terms["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in module.parameters() if p.grad is not None)


def test_training_step_returns_loss():
    module = make(alpha=0.45, beta=0.25)
    module.log = module.log_dict = lambda *args, **kwargs: None  # no trainer attached
    loss = module.training_step(batch(), 0)
    assert loss.item() == pytest.approx(module.loss_terms(batch())["loss"].item(), rel=1e-6)


# -- whole-history variants --

HIST_INPUTS = HISTORY[:, :-1]
HIST_LABELS = torch.tensor([[0, 11, 12, 5, 13], [0, 0, 4, 8, 6], [0, 0, 0, 0, 17]])
HIST_LABEL_DISLIKED = torch.tensor([[True, True, True, False, True], [False, False, True, False, False], [False, False, False, False, False]])


def test_sasrec_whole_history_ce_with_unlikelihood():
    w = 0.5
    module = make(family="whole_history", alpha=0.0, beta=0.0, unlikelihood_weight=w)
    terms = module.loss_terms(batch())
    assert set(terms) == {"loss", "loss_next"}
    with torch.no_grad():
        hidden = module.model.encode(HIST_INPUTS)
        items = module.model.items.weight
        per_position = []
        for b in range(3):
            for t in range(5):
                label = int(HIST_LABELS[b, t])
                if not label:
                    continue
                log_p = float(label_log_probs(hidden[b, t][None], torch.tensor([label]), items))
                per_position.append(w * -math.log(1 - math.exp(log_p)) if HIST_LABEL_DISLIKED[b, t] else -log_p)
    # user 0: 11, 12 (disliked), 5 (liked), 13 (disliked); user 1: 4 (disliked), 8, 6; user 2: 17
    assert len(per_position) == 8
    assert terms["loss"].item() == pytest.approx(sum(per_position) / 8, rel=1e-5)
    # the positives/negatives entries are not read
    other = module.loss_terms(batch(positives=torch.zeros(3, 6, dtype=torch.long), negatives=torch.zeros(3, 6, dtype=torch.long)))
    assert other["loss"].item() == terms["loss"].item()


def test_sasrec_whole_history_without_unlikelihood_is_plain_ce():
    module = make(family="whole_history", alpha=0.0, beta=0.0)
    terms = module.loss_terms(batch())
    with torch.no_grad():
        expected = next_item_loss(module.model.encode(HIST_INPUTS), HIST_LABELS, module.model.items.weight)
    torch.testing.assert_close(terms["loss"], expected)


def test_sasrec_c_infonce_key_is_next_liked_item():
    module = make(family="whole_history", alpha=0.0, beta=0.25, cosine=True, temperature=0.1)
    terms = module.loss_terms(batch())
    assert set(terms) == {"loss", "loss_next", "loss_contrast"}
    with torch.no_grad():
        hidden = module.model.encode(HIST_INPUTS)
        unit = torch.nn.functional.normalize
        e = unit(module.model.items.weight, dim=-1)

        def term(b: int, t: int, key: int, negatives: list[int]) -> float:
            h = unit(hidden[b, t], dim=-1)
            s_pos = float(h @ e[key]) / 0.1
            return lse([s_pos, *(float(h @ e[m]) / 0.1 for m in negatives)]) - s_pos

        # user 0, inputs [0, 3, 11, 12, 5]: liked 3 at t=1 -> next liked is 5 (t=4), skipping the disliked
        # 11, 12; liked 5 at t=4 -> next is 13, disliked, so no query. Negatives: inputs 11, 12 (not 13).
        # user 1, inputs [0, 0, 2, 4, 8]: 2 at t=2 -> key 8; 8 at t=4 -> key 6. Negative: 4.
        # user 2, inputs [0, 0, 0, 0, 16]: 16 is disliked, no query.
        expected = (term(0, 1, 5, [11, 12]) + term(1, 2, 8, [4]) + term(1, 4, 6, [4])) / 3
        loss_next = next_item_loss(hidden, HIST_LABELS, module.model.items.weight)
    assert terms["loss_contrast"].item() == pytest.approx(0.25 * expected, rel=1e-5)
    torch.testing.assert_close(terms["loss_next"], loss_next)
    torch.testing.assert_close(terms["loss"], terms["loss_next"] + terms["loss_contrast"])


def test_sasrec_c_uses_only_own_negatives():
    # user 1 alone gives the same contrast as in the batch with users 0 and 2
    module = make(family="whole_history", alpha=0.0, beta=0.25, cosine=True, temperature=0.1)
    with torch.no_grad():
        hidden = module.model.encode(HIST_INPUTS[1:2])
        alone = module.objective.infonce(module.model, hidden, HISTORY[1:2], HISTORY_POSITIVE[1:2])
        full = module.objective.infonce(module.model, module.model.encode(HIST_INPUTS), HISTORY, HISTORY_POSITIVE)
        user0 = module.objective.infonce(module.model, module.model.encode(HIST_INPUTS[:1]), HISTORY[:1], HISTORY_POSITIVE[:1])
    # queries: one for user 0, two for user 1
    assert full.item() == pytest.approx((user0.item() + 2 * alone.item()) / 3, rel=1e-5)


# -- scoring --

SEQUENCES = torch.tensor([[0, 0, 3, 5, 7], [0, 0, 0, 0, 2]])
SEEN = torch.tensor([[3, 5, 7, 0], [2, 9, 0, 0]])


def test_score_masks_padding_and_seen_items():
    module = make().eval()
    with torch.no_grad():
        scores = served_scores(module.model, SEQUENCES, SEEN)
        expected = module.model.encode(SEQUENCES)[:, -1] @ module.model.items.weight.T
    assert scores.shape == (2, 21) and scores.dtype == torch.float32
    masked = torch.zeros(2, 21, dtype=torch.bool)
    masked[:, 0] = True
    masked[0, [3, 5, 7]] = True
    masked[1, [2, 9]] = True
    assert torch.all(scores[masked] == -math.inf)
    assert torch.isfinite(scores[~masked]).all()
    torch.testing.assert_close(scores[~masked], expected[~masked])
    # padding column masked even when `seen` holds no padding entry
    with torch.no_grad():
        full = served_scores(module.model, SEQUENCES, torch.tensor([[3, 5], [2, 9]]))
    assert torch.all(full[:, 0] == -math.inf)
    assert torch.isfinite(full[:, 1]).all()


def test_score_is_fp32_under_bf16_autocast():
    module = make().eval()
    with torch.no_grad():
        reference = served_scores(module.model, SEQUENCES, SEEN)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            last = module.model.encode(SEQUENCES)[:, -1]
            # autocast is on: a plain product of the last state and the table would be bf16
            assert (last @ module.model.items.weight.T).dtype == torch.bfloat16
            scores = served_scores(module.model, SEQUENCES, SEEN)
        fp32_product = last.float() @ module.model.items.weight.float().T
    assert scores.dtype == torch.float32
    assert torch.equal(torch.isinf(scores), torch.isinf(reference))
    finite = torch.isfinite(reference)
    torch.testing.assert_close(scores[finite], fp32_product[finite], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(scores[finite], reference[finite], rtol=0.05, atol=0.05)


@pytest.mark.parametrize("block", [1, 3, 7, 21, 16384])
def test_block_wise_ranks_and_top_k_match_the_full_score_matrix(block):
    module = make(k=5, score_block_items=block).eval()
    targets = torch.tensor([4, 9])  # user 1's target 9 is seen -> unrankable
    with torch.no_grad():
        scores = served_scores(module.model, SEQUENCES, SEEN)
        ranks, top_scores, top_items = rank(module, SEQUENCES, SEEN, targets)
    assert ranks[1] == math.inf
    assert ranks[0] == sorted_ranks(scores, targets)[0]
    expected_scores, expected_items = scores.topk(5, dim=1)
    torch.testing.assert_close(top_scores, expected_scores)
    assert torch.equal(top_items, expected_items)


@pytest.mark.parametrize("block", [1, 7, 64, 500])
def test_block_wise_ranks_are_exact_up_to_k_and_inf_beyond(block):
    module = make(num_items=300, num_train_items=300, k=10, score_block_items=block).eval()
    generator = torch.Generator().manual_seed(1)
    sequences = torch.randint(1, 301, (64, 5), generator=generator)
    seen = torch.randint(0, 301, (64, 8), generator=generator)
    with torch.no_grad():
        scores = served_scores(module.model, sequences, seen)
        targets = scores.argsort(dim=1, descending=True)[torch.arange(64), torch.arange(64) % 30]  # ranks 1..30 and beyond
        exact = sorted_ranks(scores, targets)
        ranks, _, _ = rank(module, sequences, seen, targets)
    within = exact <= 10
    assert 0 < int(within.sum()) < int(torch.isfinite(exact).sum())  # both cases occur
    assert torch.equal(ranks[within], exact[within])
    assert torch.isinf(ranks[~within]).all()  # beyond k: a miss for every metric cut at k


def test_block_wise_ranks_break_ties_by_item_id():
    module = make(num_items=6, num_train_items=6, k=3, score_block_items=2).eval()
    with torch.no_grad():
        module.model.items.weight[1:] = torch.tensor([1.0] * 8).view(1, 8).repeat(6, 1)  # every item scores the same
        ranks, _, top_items = rank(module, torch.tensor([[0, 0, 0, 0, 1]] * 2), torch.tensor([[0]] * 2), torch.tensor([2, 4]))
    assert top_items.tolist() == [[1, 2, 3]] * 2  # exactly tied items: the smaller id first, across blocks
    assert ranks.tolist() == [2.0, math.inf]  # item 4 comes after 1, 2, 3: beyond k


def test_recommendations_skip_unrecommendable_slots():
    """A catalogue smaller than k after removing seen items: the empty slots get item id 0."""
    module = make(num_items=5, num_train_items=5, k=10, score_block_items=2).eval()
    with torch.no_grad():
        ranks, top_scores, top_items = rank(module, torch.tensor([[0, 0, 0, 1, 2]]), torch.tensor([[1, 2]]), torch.tensor([3]))
    assert top_items.shape == (1, 6)  # N + 1 candidates in all
    assert sorted(top_items[0, :3].tolist()) == [3, 4, 5]
    assert top_items[0, 3:].tolist() == [0, 0, 0]
    assert torch.isinf(top_scores[0, 3:]).all() and 1 <= ranks.item() <= 3


def test_eval_step_counts_each_user_in_its_sign_group():
    module = make(k=5).eval()
    eval_batch = {
        "positives": SEQUENCES,
        "history": SEQUENCES,
        "seen": SEEN,
        "target": torch.tensor([11, 9]),  # user 1's target is seen -> a miss
        "target_positive": torch.tensor([True, False]),
    }
    with torch.no_grad():
        module.validation_step(eval_batch, 0)
        scores = served_scores(module.model, SEQUENCES, SEEN)
    hr = module.metrics["val"]["hr@5"]
    assert hr.n_pos.item() == 1 and hr.n_neg.item() == 1
    rank = 1 + int((scores[0] > scores[0, 11]).sum())
    assert hr.gain_pos.item() == float(rank <= 5)
    assert hr.gain_neg.item() == 0.0
    coverage = module.metrics["val"]["coverage@5"]
    assert int(coverage.recommended[1:].sum()) == len(set(scores.topk(5).indices.flatten().tolist()))


def test_whole_history_models_rank_from_the_mixed_history():
    """family='whole_history' (SASRec, SASRec_c) reads batch['history'] at evaluation; the liked-only input is ignored."""
    module = make(family="whole_history", alpha=0.0, beta=0.0, k=5).eval()
    batch = {"positives": SEQUENCES, "history": SEQUENCES, "seen": SEEN, "target": torch.tensor([4, 11]), "target_positive": torch.tensor([True, False])}
    with torch.no_grad():
        reference = rank(module, SEQUENCES, SEEN, batch["target"])
        module.validation_step({**batch, "positives": torch.zeros_like(SEQUENCES)}, 0)
        prediction = module.predict_step({**batch, "user": torch.tensor([0, 1]), "positives": torch.zeros_like(SEQUENCES)}, 0)
    assert torch.equal(prediction["items"], reference[2])
    assert torch.equal(prediction["target"], batch["target"]) and torch.equal(prediction["target_positive"], batch["target_positive"])
    assert module.metrics["val"]["hr@5"].n_pos.item() == 1 and module.metrics["val"]["hr@5"].n_neg.item() == 1


def test_sampled_softmax_variants_train_with_finite_losses():
    for softmax in ("uniform", "popularity"):
        module = make(softmax=softmax, num_sampled=7)
        terms = module.loss_terms(batch())
        assert torch.isfinite(terms["loss"]) and set(terms) == {"loss", "loss_pos", "loss_neg", "loss_contrast"}
        terms["loss"].backward()


def test_unknown_softmax_is_a_config_error():
    with pytest.raises(ConfigError, match="`softmax` must be"):
        make(softmax="hierarchical")


def test_popularity_sampling_follows_the_training_item_counts(tiny_log, tmp_path):
    import lightning as L

    from negseq.data import FeedbackDataModule

    data = FeedbackDataModule(path=tiny_log, max_len=5, batch_size=16)
    module = NegSeqModule(data.num_items, data.num_train_items, max_len=5, dim=8, softmax="popularity", num_sampled=5)
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(module, datamodule=data)
    counts = data.item_counts
    assert counts[0] == 0 and counts.sum() == data.split.train.height
    torch.testing.assert_close(module.sampling_probs, (counts / counts.sum()).float())


def test_fit_setup_fills_the_item_polarity_from_the_training_events(tmp_path):
    """log((liked + 1) / (events + 2)) per code, counted by hand over the training split's events (both signs); an item
    that is only ever some user's held-out last event gets the unseen items' log 1/2, as padding does."""
    import lightning as L
    import polars as pl

    from negseq.data import FeedbackDataModule
    from tests.conftest import make_log

    log = make_log()
    late = pl.DataFrame({"user_id": [f"u{user}" for user in range(6)], "item_id": [999] * 6, "rating": [5.0] * 6, "timestamp": [2_000_000] * 6})
    log.vstack(late.cast(log.schema)).write_csv(tmp_path / "log.csv")
    data = FeedbackDataModule(path=str(tmp_path / "log.csv"), max_len=5, batch_size=16, cache=False)
    liked, events = [0] * (data.num_items + 1), [0] * (data.num_items + 1)
    for code, positive in data.split.train.select("item", "positive").iter_rows():
        events[code] += 1
        liked[code] += positive
    expected = [math.log((a + 1) / (n + 2)) for a, n in zip(liked, events)]
    unseen = data.item_ids.to_list().index(999) + 1
    assert events[unseen] == 0 and 0 < sum(liked) < sum(events)
    module = NegSeqModule(data.num_items, data.num_train_items, max_len=5, dim=8, polarity_prior=1.0)
    assert module.model.item_polarity.tolist() == [0.0] * (data.num_items + 1)
    trainer = L.Trainer(max_steps=1, limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(module, datamodule=data)
    assert module.model.item_polarity.tolist() == pytest.approx(expected, rel=1e-6)
    assert module.model.item_polarity[unseen] == module.model.item_polarity[0] == pytest.approx(math.log(1 / 2))


def test_a_prior_ranks_the_allowed_items_in_the_order_of_the_whole_catalogue():
    """With a prior, ranking only the allowed codes gives the whole catalogue's order with the others left out (the
    bias follows each allowed code), and the prior does change that order."""
    module = make(polarity_prior=3.0).eval()
    generator = torch.Generator().manual_seed(4)
    module.model.item_polarity.copy_(torch.log(torch.rand(SIZES["num_items"] + 1, generator=generator)))
    batch = {"positives": POSITIVES[:, :-1], "seen": POSITIVES[:, :-1], "target": POSITIVES[:, -1]}
    allowed = torch.tensor([2, 3, 5, 8, 9, 12, 13, 17, 19, 20])
    with torch.no_grad():
        whole = inference.rank(module.model, batch, SIZES["num_items"], "positives")
        restricted = inference.rank(module.model, batch, 4, "positives", allowed=allowed)
        ranking_weights.write(module.model, {"polarity_prior": 0.0})
        without = inference.rank(module.model, batch, SIZES["num_items"], "positives")
    assert not torch.equal(whole.items, without.items)
    for row in range(len(POSITIVES)):
        keep = torch.isin(whole.items[row], allowed)
        assert restricted.items[row].tolist() == whole.items[row][keep][:4].tolist()
        assert torch.equal(restricted.scores[row], whole.scores[row][keep][:4])


def test_chunked_cross_entropy_gives_the_same_loss_terms():
    reference = make().loss_terms(batch())
    chunked = make(ce_chunk_items=6).loss_terms(batch())
    for name, value in reference.items():
        torch.testing.assert_close(chunked[name], value, rtol=1e-5, atol=1e-6)


def test_checkpoints_written_before_the_model_was_its_own_module_still_load(tmp_path):
    """Older checkpoints name the weights without the ``model.`` prefix and have no ranking-weight buffers (nor the prior's
    log-rates): they rank with their hyper-parameters' weights, the prior's 0."""
    torch.manual_seed(0)
    module = NegSeqModule(num_items=20, num_train_items=20, max_len=5, dim=8, negative_scoring=0.5)
    buffers = {"model.negative_scoring", "model.dislike_demotion", "model.polarity_prior", "model.item_polarity"}
    older = {key.removeprefix("model."): value for key, value in module.state_dict().items() if key not in buffers}
    path = tmp_path / "older.ckpt"
    saved = {name: value for name, value in module.hparams.items() if name != "polarity_prior"}  # before the prior existed
    torch.save({"state_dict": older, "hyper_parameters": saved, "pytorch-lightning_version": "2.6.0"}, path)
    loaded = NegSeqModule.load_from_checkpoint(path, weights_only=True)
    assert loaded.state_dict().keys() == module.state_dict().keys()
    assert all(torch.equal(value, module.state_dict()[key]) for key, value in loaded.state_dict().items())
    assert float(loaded.model.negative_scoring) == 0.5  # from the hyper-parameters it was trained with
    assert float(loaded.model.polarity_prior) == 0.0 and loaded.model.item_bias() is None
    with pytest.raises(ConfigError, match="num_items=20 but this run has num_items=30"):
        NegSeqModule.load_from_checkpoint(path, weights_only=True, num_items=30)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(heads=2), "heads=1 but this run has heads=2"),  # the same weight shapes: loaded silently before
        (dict(blocks=1), "blocks=2 but this run has blocks=1"),
        (dict(fusion="gated"), "fusion=none but this run has fusion=gated"),
        (dict(alpha=0.0), "alpha=0.45 but this run has alpha=0.0"),
        (dict(family="whole_history", alpha=0.0, beta=0.0), "family=sign_separated, alpha=0.45 but this run has family=whole_history, alpha=0.0"),
        (dict(family="signed", alpha=0.0, beta=0.0, sign_weight=0.5), "family=sign_separated, alpha=0.45, sign_weight=0.0 but this run has family=signed, alpha=0.0, sign_weight=0.5"),
    ],
)
def test_a_checkpoint_of_another_architecture_is_refused_in_one_line(overrides, message):
    """As `negseq test --config RUN/config.yaml --ckpt_path RUN/checkpoints/best.ckpt --model.heads 2` loads it: the trainer
    hands the saved checkpoint to the module built from the command line (a raw load_state_dict traceback, or silence, before)."""
    saved = {"state_dict": make(heads=1).state_dict(), "hyper_parameters": dict(make(heads=1).hparams)}
    make(alpha=0.3).on_load_checkpoint(saved)  # a loss weight: the same network
    with pytest.raises(ConfigError, match=rf"^checkpoint was trained with {message}: use the same"):
        make(**overrides).on_load_checkpoint(saved)
