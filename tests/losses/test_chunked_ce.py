"""The chunked full softmax gives the values and gradients of the one-piece one."""

from __future__ import annotations

import pytest
import torch

from negseq.losses import label_log_probs


@pytest.mark.parametrize("chunk", [1, 3, 7, 50])
def test_chunked_log_probs_and_gradients_match_the_full_softmax(chunk):
    torch.manual_seed(0)
    items = torch.randn(12, 5, dtype=torch.float64, requires_grad=True)
    hidden = torch.randn(9, 5, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([1, 11, 4, 4, 7, 2, 9, 1, 5])
    weights = torch.randn(9, dtype=torch.float64)  # a non-uniform upstream gradient

    full = label_log_probs(hidden, labels, items)
    (full * weights).sum().backward()
    expected = full.detach(), hidden.grad.clone(), items.grad.clone()
    hidden.grad, items.grad = None, None

    chunked = label_log_probs(hidden, labels, items, chunk_items=chunk)
    (chunked * weights).sum().backward()
    torch.testing.assert_close(chunked.detach(), expected[0].float(), rtol=1e-5, atol=1e-6, check_dtype=False)
    torch.testing.assert_close(hidden.grad, expected[1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(items.grad, expected[2], rtol=1e-5, atol=1e-6)
    assert items.grad[0].abs().sum() == 0  # the padding row is never a candidate
