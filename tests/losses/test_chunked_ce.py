"""The fused full softmax, in one piece or in chunks, gives the values and gradients of ``cross_entropy``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from negseq.losses import label_log_probs


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


def test_logits_stay_fp32_under_bf16_autocast():
    torch.manual_seed(0)
    items, hidden, labels = torch.randn(300, 16), torch.randn(7, 16), torch.randint(1, 300, (7,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = label_log_probs(hidden, labels, items)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, label_log_probs(hidden, labels, items), rtol=1e-6, atol=1e-6)


def test_huge_logits_stay_finite_in_fp32():
    torch.manual_seed(0)
    items, hidden, labels = torch.randn(300, 16) * 10, torch.randn(7, 16) * 10, torch.randint(1, 300, (7,))  # logits ~ +-400
    expected = -F.cross_entropy(hidden @ items[1:].T, labels - 1, reduction="none")
    torch.testing.assert_close(label_log_probs(hidden, labels, items), expected, rtol=1e-5, atol=1e-4)
