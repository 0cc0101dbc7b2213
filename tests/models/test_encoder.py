"""CausalEncoder: causal masking, left padding, right-aligned positions."""

import math

import pytest
import torch
import torch.nn.functional as F

from negseq.errors import ConfigError
from negseq.models.encoder import CausalEncoder, Dropout

D = 8


def make_encoder(max_len: int = 6, blocks: int = 2, heads: int = 2, seed: int = 0) -> CausalEncoder:
    torch.manual_seed(seed)
    encoder = CausalEncoder(max_len=max_len, dim=D, blocks=blocks, heads=heads, dropout=0.3)
    with torch.no_grad():  # non-trivial positional table and norm parameters
        encoder.positions.weight.normal_()
        encoder.final_norm.weight.uniform_(0.5, 1.5)
        encoder.final_norm.bias.normal_()
    return encoder.eval()


def embeddings(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(*shape, D, generator=torch.Generator().manual_seed(seed))


def test_output_shape():
    encoder = make_encoder()
    for batch, length in ((3, 6), (2, 4), (1, 1)):
        out = encoder(embeddings(batch, length), torch.ones(batch, length, dtype=torch.bool))
        assert out.shape == (batch, length, D)


def test_heads_must_divide_dim():
    with pytest.raises(ValueError, match="divisible"):
        CausalEncoder(max_len=4, dim=D, blocks=1, heads=3, dropout=0.0)


@pytest.mark.parametrize("changed", [1, 3, 5])
def test_causality_future_item_does_not_change_earlier_outputs(changed):
    encoder = make_encoder()
    x = embeddings(2, 6)
    valid = torch.ones(2, 6, dtype=torch.bool)
    valid[1, :2] = False  # also with left padding
    y = x.clone()
    y[:, changed] = embeddings(2, seed=7)  # a different item (a constant shift would be normed away)
    with torch.no_grad():
        before, after = encoder(x, valid), encoder(y, valid)
    torch.testing.assert_close(after[0, :changed], before[0, :changed], rtol=0, atol=1e-6)
    torch.testing.assert_close(after[1, :changed], before[1, :changed], rtol=0, atol=1e-6)
    # the changed position and everything after it do see the change
    assert (after[0, changed:] - before[0, changed:]).abs().amax(dim=-1).min() > 1e-3


def test_padded_embeddings_do_not_affect_real_positions():
    encoder = make_encoder()
    valid = torch.tensor([[False, False, True, True, True, True], [False, False, False, False, False, True]])
    x = embeddings(2, 6)
    junk = x.clone()
    junk[~valid] = torch.randn(int((~valid).sum()), D) * 100.0
    zeros = x.clone()
    zeros[~valid] = 0.0
    with torch.no_grad():
        outputs = [encoder(e, valid) for e in (x, junk, zeros)]
    for other in outputs[1:]:
        torch.testing.assert_close(other[valid], outputs[0][valid], rtol=0, atol=1e-5)


def test_padding_matters_only_through_masking():
    # marking a position as padding does change the real outputs (the test above is not vacuous)
    encoder = make_encoder()
    x = embeddings(1, 6)
    all_valid = torch.ones(1, 6, dtype=torch.bool)
    left_padded = all_valid.clone()
    left_padded[0, :2] = False
    with torch.no_grad():
        a, b = encoder(x, all_valid), encoder(x, left_padded)
    assert (a[0, 2:] - b[0, 2:]).abs().max() > 1e-3


def test_all_padding_row_gives_finite_output():
    encoder = make_encoder()
    valid = torch.zeros(2, 6, dtype=torch.bool)
    valid[1] = True
    with torch.no_grad():
        out = encoder(embeddings(2, 6), valid)
    assert torch.isfinite(out).all()
    # padded positions are zero before the final norm, so they read the norm's bias
    torch.testing.assert_close(out[0], encoder.final_norm.bias.expand(6, -1))


def test_all_padding_row_finite_gradient():
    encoder = make_encoder().train()
    x = embeddings(1, 4).requires_grad_(True)
    encoder(x, torch.zeros(1, 4, dtype=torch.bool)).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in encoder.parameters() if p.grad is not None)


def test_positions_are_right_aligned_without_blocks():
    # with no block the encoder is final_norm((e * sqrt(D) + P[max_len - T:]) * valid)
    encoder = make_encoder(max_len=5, blocks=0)
    x = embeddings(1, 3)
    valid = torch.tensor([[False, True, True]])
    positions = encoder.positions.weight[2:5]  # the last T = 3 of max_len = 5 rows
    expected = F.layer_norm((x * math.sqrt(D) + positions) * valid[..., None], (D,), encoder.final_norm.weight, encoder.final_norm.bias)
    with torch.no_grad():
        torch.testing.assert_close(encoder(x, valid), expected)


def test_short_sequence_equals_left_padded_full_length_sequence():
    # right-aligned positions: a length-4 sequence uses positional rows 2..5 of 6, exactly as the
    # same items left-padded to length 6 do
    encoder = make_encoder(max_len=6)
    short = embeddings(1, 4)
    padded = torch.cat([embeddings(1, 2, seed=9), short], dim=1)
    valid = torch.tensor([[False, False, True, True, True, True]])
    with torch.no_grad():
        a = encoder(short, torch.ones(1, 4, dtype=torch.bool))
        b = encoder(padded, valid)
    torch.testing.assert_close(a[0], b[0, 2:], rtol=0, atol=1e-5)
    # with left-aligned positions the two would differ
    left_aligned = encoder.positions.weight[:4]
    assert not torch.allclose(left_aligned, encoder.positions.weight[2:6])


def test_eval_is_deterministic_and_train_applies_dropout():
    encoder = make_encoder()
    x, valid = embeddings(2, 6), torch.ones(2, 6, dtype=torch.bool)
    with torch.no_grad():
        torch.testing.assert_close(encoder(x, valid), encoder(x, valid), rtol=0, atol=0)
        encoder.train()
        torch.manual_seed(0)
        a = encoder(x, valid)
        torch.manual_seed(1)
        b = encoder(x, valid)
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("blocks", [0, 1, 2])
def test_last_only_is_the_newest_state_of_the_full_pass(blocks):
    torch.manual_seed(0)
    encoder = CausalEncoder(max_len=6, dim=8, blocks=blocks, heads=2, dropout=0.0).eval()
    items = torch.tensor([[0, 0, 3, 5, 7, 9], [0, 0, 0, 0, 0, 4], [0, 0, 0, 0, 0, 0]])
    embeddings = torch.randn(3, 6, 8) * (items > 0)[..., None]
    with torch.no_grad():
        full = encoder(embeddings, items > 0)
        last = encoder(embeddings, items > 0, last_only=True)
    assert last.shape == (3, 1, 8)
    torch.testing.assert_close(last, full[:, -1:], rtol=1e-5, atol=1e-6)


# -- dropout from 16-bit draws --


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropout_drops_each_element_with_probability_p_and_rescales_the_rest(p):
    torch.manual_seed(0)
    dropout = Dropout(p).train()
    x = torch.rand(1000, 1000) + 1.0  # no zeros of its own
    y = dropout(x)
    dropped = y == 0
    # the four 16-bit slices of each 64-bit random word are all uniform (a word drawn over [0, 2**63) would never drop its top slice)
    for slice_ in range(4):
        assert abs(dropped.view(-1)[slice_::4].float().mean().item() - p) < 0.005
    keep_probability = 1 - round(p * 2**16) / 2**16
    torch.testing.assert_close(y[~dropped], x[~dropped] / keep_probability)


def test_dropout_gradient_is_the_same_mask():
    torch.manual_seed(0)
    x = torch.randn(64, 32, requires_grad=True)
    y = Dropout(0.3).train()(x)
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.where(y == 0, 0.0, 1 / (1 - round(0.3 * 2**16) / 2**16)))


def test_dropout_is_the_identity_in_eval_and_at_zero():
    x = torch.randn(5, 7)
    assert Dropout(0.5).eval()(x) is x
    assert Dropout(0.0).train()(x) is x
    with pytest.raises(ConfigError, match=r"`dropout` must be in \[0, 1\), got 1.0"):
        Dropout(1.0)


def test_dropout_follows_the_global_seed():
    dropout = Dropout(0.2).train()
    x = torch.ones(100, 100)
    torch.manual_seed(3)
    first = dropout(x)
    torch.manual_seed(3)
    torch.testing.assert_close(dropout(x), first)
    assert not torch.equal(dropout(x), first)


def test_written_out_attention_equals_the_fused_one_when_nothing_is_dropped():
    encoder = make_encoder()
    x = embeddings(3, 6)
    valid = torch.ones(3, 6, dtype=torch.bool)
    valid[1, :3] = False
    with torch.no_grad():
        fused = encoder(x, valid)
        encoder.train()
        for module in encoder.modules():  # training mode (the written-out path), but keep every element
            if isinstance(module, Dropout):
                module.forward = lambda value: value
        written_out = encoder(x, valid)
    torch.testing.assert_close(written_out, fused, rtol=1e-5, atol=1e-5)


def test_training_mode_drops_out():
    encoder = make_encoder().train()
    x, valid = embeddings(2, 6), torch.ones(2, 6, dtype=torch.bool)
    torch.manual_seed(0)
    first = encoder(x, valid)
    torch.manual_seed(1)
    assert (encoder(x, valid) - first).abs().max() > 1e-3
