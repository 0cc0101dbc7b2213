"""SASRec's causal transformer encoder, reading item embeddings it is handed.

The item table is not owned here: PNFRec's two encoders share one table (which is also the
output layer), so the module that owns the table embeds the ids and each encoder adds its own
positions. Sequences are left-padded (id 0 on the left), so the newest item is always at
position ``L - 1``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from negseq.errors import ConfigError


class Dropout(nn.Module):
    """Dropout whose keep mask comes from 16 random bits per element.

    Why not ``nn.Dropout``: on CPU it draws one Bernoulli sample per element, which took a fifth
    of a PNFRec training step; slicing 64-bit random words into four 16-bit draws is about 8x
    cheaper. ``p`` is rounded to a multiple of 1/65536 (0.1 drops with probability 0.100006)
    and the kept values are scaled by the exact inverse keep probability.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ConfigError(f"`dropout` must be in [0, 1), got {p}")
        self.dropped_draws = round(p * 2**16)  # of the 2**16 values a 16-bit draw takes

    @property
    def active(self) -> bool:
        return self.training and self.dropped_draws > 0

    def forward(self, x: Tensor) -> Tensor:
        if not self.active:
            return x
        draws = torch.empty((x.numel() + 3) // 4, dtype=torch.int64, device=x.device).random_(-(2**63), 2**63 - 1)
        draws = draws.view(torch.int16)[: x.numel()].view(x.shape)  # uniform over [-2**15, 2**15)
        keep = draws >= self.dropped_draws - 2**15
        return x * (keep.to(x.dtype) * (2**16 / (2**16 - self.dropped_draws)))


class CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise ConfigError(f"`dim` ({dim}) must be divisible by `heads` ({heads})")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor, allowed: Tensor, last_only: bool = False) -> Tensor:
        """``(B, T, D)`` -> ``(B, T, D)``, or ``(B, 1, D)`` for the newest position only with ``last_only``."""
        batch, length, dim = x.shape
        if last_only:  # the newest position's query alone, the keys and values of every position
            (q,) = self._split_heads(F.linear(x[:, -1:], self.qkv.weight[:dim], self.qkv.bias[:dim]))
            k, v = self._split_heads(F.linear(x, self.qkv.weight[dim:], self.qkv.bias[dim:]))
            allowed = allowed[..., -1:, :]
        else:
            q, k, v = self._split_heads(self.qkv(x))
        y = self._attend(q, k, v, allowed)  # (B, H, T', D/H)
        return self.out(y.transpose(1, 2).reshape(batch, q.shape[2], dim))  # (B, T', D)

    def _split_heads(self, projected: Tensor) -> Tensor:
        """``(B, T, n * D)`` -> ``(n, B, H, T, D / H)``: n of query, key and value, split into heads."""
        batch, length, width = projected.shape
        dim = self.out.in_features
        return projected.view(batch, length, width // dim, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, allowed: Tensor) -> Tensor:
        """Fused attention when nothing is dropped; written out with the cheap mask otherwise
        (``scaled_dot_product_attention``'s own dropout costs a Bernoulli draw per weight)."""
        if not self.dropout.active:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        weights = (q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5).masked_fill(~allowed, float("-inf")).softmax(dim=-1)
        return self.dropout(weights) @ v


class Block(nn.Module):
    """Pre-norm SASRec block: x + attn(norm(x)), then x + ffn(norm(x))."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(dim)
        self.attention = CausalSelfAttention(dim, heads, dropout)
        self.feed_forward_norm = nn.LayerNorm(dim)
        self.feed_forward = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), Dropout(dropout), nn.Linear(dim, dim), Dropout(dropout))
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor, allowed: Tensor, last_only: bool = False) -> Tensor:
        attended = self.attention(self.attention_norm(x), allowed, last_only)
        x = (x[:, -1:] if last_only else x) + self.dropout(attended)
        return x + self.feed_forward(self.feed_forward_norm(x))


class CausalEncoder(nn.Module):
    """Item embeddings of a left-padded sequence -> one hidden state per position.

    Args:
        max_len: longest sequence (number of positional embeddings).
        dim: hidden size, equal to the item embedding size.
        blocks: number of transformer blocks.
        heads: attention heads.
        dropout: dropout on embeddings, attention and feed-forward.
    """

    def __init__(self, max_len: int, dim: int, blocks: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.positions = nn.Embedding(max_len, dim)
        self.dropout = Dropout(dropout)
        self.blocks = nn.ModuleList(Block(dim, heads, dropout) for _ in range(blocks))
        self.final_norm = nn.LayerNorm(dim)
        self.scale = math.sqrt(dim)

    def forward(self, item_embeddings: Tensor, valid: Tensor, last_only: bool = False) -> Tensor:
        """``item_embeddings`` (B, T, D) and ``valid`` (B, T, bool, False at padding) -> (B, T, D).

        ``last_only`` returns ``(B, 1, D)``, the newest position's state, computing the last block
        for that position alone: evaluation ranks from it, and the last block's attention and
        feed-forward over every position would be wasted there.
        """
        length = item_embeddings.shape[1]
        positions = self.positions.weight[-length:]  # (T, D): right-aligned, like the sequences
        x = self.dropout(item_embeddings * self.scale + positions) * valid[..., None]  # (B, T, D)
        causal = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()  # (T, T)
        own = torch.eye(length, dtype=torch.bool, device=x.device)
        # a query sees earlier real items and always itself, so an all-padding row stays finite
        allowed = (causal & (valid[:, None, :] | own))[:, None]  # (B, 1, T, T)
        for index, block in enumerate(self.blocks):
            x = block(x, allowed, last_only and index == len(self.blocks) - 1)
            x = x * valid[:, -x.shape[1] :, None]  # the last block may have kept the newest position alone
        return self.final_norm(x[:, -1:] if last_only else x)
