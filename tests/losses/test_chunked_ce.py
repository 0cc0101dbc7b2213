"""The fused full softmax, in one piece or in chunks, gives the values and gradients of ``cross_entropy``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from negseq.models.losses import _bucket, label_log_probs


@pytest.mark.parametrize("scale", [1.0, 30.0])  # logits small enough to skip the row max, and not
@pytest.mark.parametrize("chunk", [0, 1, 3, 7, 50])
def test_fused_log_probs_and_gradients_match_cross_entropy(chunk, scale):
    torch.manual_seed(0)
    items = torch.randn(12, 5, dtype=torch.float64, requires_grad=True)
    hidden = (torch.randn(9, 5, dtype=torch.float64) * scale).requires_grad_()
    labels = torch.tensor([1, 11, 4, 4, 7, 2, 9, 1, 5])
    weights = torch.randn(9, dtype=torch.float64)  # a non-uniform upstream gradient

    full = -F.cross_entropy(hidden @ items[1:].T, labels - 1, reduction="none")
    (full * weights).sum().backward()
    expected = full.detach(), hidden.grad.clone(), items.grad.clone()
    hidden.grad, items.grad = None, None

    chunked = label_log_probs(hidden, labels, items, chunk_items=chunk)
    (chunked * weights).sum().backward()
    tolerance = {"rtol": 1e-5 * scale, "atol": 1e-6 * scale}  # computed in fp32
    torch.testing.assert_close(chunked.detach(), expected[0].float(), **tolerance, check_dtype=False)
    torch.testing.assert_close(hidden.grad, expected[1], **tolerance)
    torch.testing.assert_close(items.grad, expected[2], **tolerance)
    assert items.grad[0].abs().sum() == 0  # the padding row is never a candidate


def test_a_second_backward_through_the_kept_logits_gives_the_same_gradients():
    torch.manual_seed(0)
    items = torch.randn(12, 5, requires_grad=True)
    hidden = torch.randn(9, 5, requires_grad=True)
    loss = label_log_probs(hidden, torch.randint(1, 12, (9,)), items).sum()
    loss.backward(retain_graph=True)
    first = hidden.grad.clone(), items.grad.clone()
    hidden.grad, items.grad = None, None
    loss.backward()  # the first backward left the kept softmax as it was
    torch.testing.assert_close(hidden.grad, first[0])
    torch.testing.assert_close(items.grad, first[1])


@pytest.mark.parametrize("chunk", [0, 7])
def test_bf16_autocast_runs_the_matmuls_in_bf16_and_the_softmax_in_fp32(chunk):
    torch.manual_seed(0)
    items = (torch.randn(300, 16) * 0.6).requires_grad_()
    hidden = (torch.randn(37, 16) * 0.6).requires_grad_()  # logits up to ~8; 37 positions are padded to 38 in bf16
    labels, weights = torch.randint(1, 300, (37,)), torch.randn(37)

    exact = label_log_probs(hidden, labels, items, chunk_items=chunk)
    (exact * weights).sum().backward()
    exact_grads = hidden.grad.clone(), items.grad.clone()
    hidden.grad, items.grad = None, None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = label_log_probs(hidden, labels, items, chunk_items=chunk)
    (mixed * weights).sum().backward()

    assert mixed.dtype == torch.float32
    assert (mixed - exact).abs().max() > 1e-4  # the bf16 matmul was used ...
    torch.testing.assert_close(mixed, exact, rtol=0, atol=8 * 2**-8)  # ... within its rounding of logits up to 8
    for grad, exact_grad in zip((hidden.grad, items.grad), exact_grads):
        torch.testing.assert_close(grad, exact_grad, rtol=0, atol=0.01 * exact_grad.abs().max().item())


def test_fp16_autocast_keeps_fp32_logits():  # exp of fp16 logits would overflow past 11
    torch.manual_seed(0)
    items, hidden, labels = torch.randn(300, 16), torch.randn(7, 16), torch.randint(1, 300, (7,))
    with torch.autocast("cpu", dtype=torch.float16):
        mixed = label_log_probs(hidden, labels, items)
    torch.testing.assert_close(mixed, label_log_probs(hidden, labels, items), rtol=1e-6, atol=1e-6)


def test_bucketed_sizes_cover_the_rows_with_little_padding_and_few_shapes():
    for rows in range(1, 5000):
        assert rows <= _bucket(rows) <= rows * 1.0625
    assert {_bucket(rows) for rows in range(2048, 4096)} == set(range(2048, 4097, 128))


def test_huge_logits_stay_finite_in_fp32():
    torch.manual_seed(0)
    items, hidden, labels = torch.randn(300, 16) * 10, torch.randn(7, 16) * 10, torch.randint(1, 300, (7,))  # logits ~ +-400
    expected = -F.cross_entropy(hidden @ items[1:].T, labels - 1, reduction="none")
    torch.testing.assert_close(label_log_probs(hidden, labels, items), expected, rtol=1e-5, atol=1e-4)
