"""``weight_decay``: 0 is the paper's plain Adam, bit for bit; > 0 is AdamW decaying the matrices and embeddings only."""

import pytest
import torch

from negseq.errors import ConfigError
from negseq.training.module import NegSeqModule

SIZES = {"num_items": 20, "num_train_items": 20, "max_len": 5, "dim": 8, "dropout": 0.0}
BATCH = {
    "positives": torch.tensor([[0, 0, 3, 5, 7, 9], [0, 0, 0, 0, 2, 4]]),
    "negatives": torch.tensor([[0, 0, 0, 11, 12, 13], [0, 0, 0, 0, 14, 15]]),
}


def make(**kwargs) -> NegSeqModule:
    torch.manual_seed(0)
    return NegSeqModule(**SIZES, **kwargs)


def step(module: NegSeqModule, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """One optimisation step on BATCH; the parameters after it by name."""
    optimizer.zero_grad()
    module.loss_terms(BATCH)["loss"].backward()
    optimizer.step()
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def test_no_weight_decay_is_plain_adam_bit_for_bit():
    module = make()
    optimizer = module.configure_optimizers()
    assert type(optimizer) is torch.optim.Adam and len(optimizer.param_groups) == 1
    group = optimizer.param_groups[0]
    assert group["lr"] == 1e-3 and group["weight_decay"] == 0 and group["params"] == list(module.parameters())
    reference = make()
    after = step(module, optimizer)
    expected = step(reference, torch.optim.Adam(reference.parameters(), lr=1e-3))  # what configure_optimizers returned before
    assert after.keys() == expected.keys() and all(torch.equal(after[name], expected[name]) for name in after)


def test_weight_decay_is_adamw_on_exactly_the_parameters_of_two_or_more_dimensions():
    module = make(weight_decay=0.05, lr=2e-3)
    optimizer = module.configure_optimizers()
    assert type(optimizer) is torch.optim.AdamW
    decayed, kept = optimizer.param_groups
    assert (decayed["weight_decay"], kept["weight_decay"]) == (0.05, 0.0) and decayed["lr"] == kept["lr"] == 2e-3
    named = dict(module.named_parameters())
    by_id = {id(p): name for name, p in named.items()}
    decayed_names, kept_names = {by_id[id(p)] for p in decayed["params"]}, {by_id[id(p)] for p in kept["params"]}
    assert decayed_names == {name for name, p in named.items() if p.dim() > 1}
    assert kept_names == {name for name, p in named.items() if p.dim() <= 1}
    assert len(decayed["params"]) + len(kept["params"]) == len(named)  # each parameter once
    # the item table, positions and attention matrices decay; biases and layer norms do not
    assert {"model.items.weight", "model.encoder.positions.weight", "model.encoder.blocks.0.attention.qkv.weight"} <= decayed_names
    assert {"model.encoder.blocks.0.attention.qkv.bias", "model.encoder.final_norm.weight", "model.encoder.final_norm.bias"} <= kept_names


def test_a_signed_models_sign_embedding_and_head_matrix_decay_too():
    module = NegSeqModule(**SIZES, family="signed", alpha=0.0, beta=0.0, sign_weight=0.5, weight_decay=0.01)
    decayed, kept = module.configure_optimizers().param_groups
    assert any(p is module.model.signs.weight for p in decayed["params"]) and any(p is module.model.sign_head.weight for p in decayed["params"])
    assert any(p is module.model.sign_head.bias for p in kept["params"])


def test_one_step_shrinks_each_decayed_matrix_by_lr_times_weight_decay_relative_to_adam():
    lr, wd = 1e-2, 0.1
    adam, adamw = make(lr=lr), make(lr=lr, weight_decay=wd)
    before = {name: p.detach().clone() for name, p in adamw.named_parameters()}
    plain = step(adam, adam.configure_optimizers())
    decayed = step(adamw, adamw.configure_optimizers())
    for name, value in before.items():
        if value.dim() > 1:  # decoupled: p (1 - lr wd) - lr * adam_step, against p - lr * adam_step
            torch.testing.assert_close(decayed[name] - plain[name], -lr * wd * value, rtol=1e-4, atol=1e-7)
        else:
            assert torch.equal(decayed[name], plain[name]), name
    assert (before["model.items.weight"].abs().sum() * lr * wd).item() > 1e-3  # the shrinkage tested is not negligible
    assert torch.equal(decayed["model.items.weight"][0], torch.zeros(8))  # the padding row stays zero


def test_negative_weight_decay_is_refused():
    with pytest.raises(ConfigError, match=r"`weight_decay` must be 0 \(off\) or positive, got -0.1"):
        make(weight_decay=-0.1)
