"""``negative_table_gradient``: how much of CE_neg's gradient reaches the shared item table (1 the paper, 0 none)."""

import pytest
import torch

from negseq.errors import ConfigError
from negseq.models.families.sign_separated import scale_gradient
from tests.models.test_module import batch, make


def table_gradients(share: float) -> dict[str, torch.Tensor]:
    """The item table's gradient from CE_neg alone and from the whole loss, and the negative encoder's from CE_neg."""
    module = make(alpha=0.45, beta=0.25, negative_table_gradient=share)
    grads = {}
    terms = module.loss_terms(batch())
    table, encoder = module.model.items.weight, next(module.model.negative_encoder.parameters())
    neg_table, grads["neg_encoder"] = torch.autograd.grad(terms["loss_neg"], [table, encoder], retain_graph=True, allow_unused=True)
    grads["neg_table"] = torch.zeros_like(table) if neg_table is None else neg_table  # None: CE_neg does not reach the table
    grads["rest_table"] = torch.autograd.grad(terms["loss_pos"] + terms["loss_contrast"], module.model.items.weight)[0]
    grads["terms"] = torch.stack([terms[name].detach() for name in ("loss_pos", "loss_neg", "loss_contrast")])
    return grads


def test_scale_gradient_keeps_the_value_and_scales_the_gradient():
    x = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    for share in (1.0, 0.5):
        y = scale_gradient(x, share)
        assert torch.equal(y, x.detach())
        (gradient,) = torch.autograd.grad((y * torch.tensor([1.0, 2.0, 3.0])).sum(), x)
        torch.testing.assert_close(gradient, share * torch.tensor([1.0, 2.0, 3.0]))
    assert scale_gradient(x, 1.0) is x  # the paper's path is untouched
    assert torch.equal(scale_gradient(x, 0.0), x.detach()) and not scale_gradient(x, 0.0).requires_grad


def test_the_share_scales_only_ce_neg_gradient_into_the_item_table():
    paper, half, none = table_gradients(1.0), table_gradients(0.5), table_gradients(0.0)
    assert paper["neg_table"].abs().sum() > 0
    torch.testing.assert_close(half["neg_table"], 0.5 * paper["neg_table"])
    assert torch.count_nonzero(none["neg_table"]) == 0
    for other in (half, none):
        torch.testing.assert_close(other["terms"], paper["terms"], rtol=0, atol=0)  # the loss values are the paper's
        torch.testing.assert_close(other["rest_table"], paper["rest_table"], rtol=0, atol=0)  # CE_pos and the contrast move it as before
        torch.testing.assert_close(other["neg_encoder"], paper["neg_encoder"], rtol=0, atol=0)  # the negative encoder still learns


@pytest.mark.parametrize("kwargs", [dict(alpha=0.0, negative_table_gradient=0.0), dict(negative_table_gradient=-0.5)])
def test_a_share_without_ce_neg_or_below_zero_is_refused(kwargs):
    with pytest.raises(ConfigError, match="negative_table_gradient"):
        make(**kwargs)
