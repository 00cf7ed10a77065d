"""Shared building blocks: a pre-LayerNorm transformer block and a weighted cross-entropy."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TransformerBlock(nn.Module):
    """Pre-LayerNorm block: x + Attn(LN(x)); x + FFN(LN(x)).

    Attention uses ``scaled_dot_product_attention`` with a boolean mask
    ``[B, 1, L, L]`` (True = may attend).
    """

    def __init__(self, hidden: int, heads: int, dropout: float, ffn_hidden: int, activation: str = "gelu"):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden ({hidden}) must be divisible by num_heads ({heads})")
        self.heads = heads
        self.ln1 = nn.LayerNorm(hidden, eps=1e-8)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.ln2 = nn.LayerNorm(hidden, eps=1e-8)
        self.ff1 = nn.Linear(hidden, ffn_hidden)
        self.ff2 = nn.Linear(ffn_hidden, hidden)
        self.act = nn.GELU() if activation == "gelu" else nn.ReLU()
        self.drop = nn.Dropout(dropout)
        self.p = dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, l, d = x.shape  # x: [B, L, D]
        q, k, v = self.qkv(self.ln1(x)).view(b, l, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # 3 × [B, H, L, Dh]
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.p if self.training else 0.0)
        x = x + self.drop(self.proj(a.transpose(1, 2).reshape(b, l, d)))  # [B, L, D]
        return x + self.drop(self.ff2(self.drop(self.act(self.ff1(self.ln2(x))))))


def attention_mask(valid: torch.Tensor, causal: bool) -> torch.Tensor:
    """``[B, 1, L, L]`` boolean mask from ``valid`` ([B, L], True at real items).

    Keys at padding are hidden; every position may attend to itself (so padded rows stay finite).
    """
    l = valid.shape[1]
    m = valid[:, None, None, :]  # [B, 1, 1, L]
    eye = torch.eye(l, dtype=torch.bool, device=valid.device)
    if causal:
        m = m & torch.ones(l, l, dtype=torch.bool, device=valid.device).tril()
    return m | eye


class _LinearSoftmaxCE(torch.autograd.Function):
    """Σ_i c_i·CE(h_i·Wᵀ + b, t_i), computed in row chunks with a hand-written backward.

    The ``[P, N]`` logits are never materialised at once: forward computes each
    chunk's log-sum-exp and discards it; backward recomputes the chunk (one extra
    matmul) and turns it into the gradient in place. On ML-1M (P ≈ 25k positions per
    batch, N = 3,416) the stock ``F.cross_entropy`` path spent ~45% of SASRec's CPU
    step in log-softmax kernels and page faults of 350 MB temporaries (torch
    profiler); chunks of a few MB stay in the allocator's reuse pool and the memory
    need no longer grows with the catalogue.
    """

    @staticmethod
    def forward(ctx, h, weight, bias, targets, coef, chunk: int):
        total = h.new_zeros(())
        for s in range(0, h.shape[0], chunk):
            z = h[s : s + chunk] @ weight.T  # [C, N]
            if bias is not None:
                z += bias
            z -= z.amax(dim=1, keepdim=True)
            z_t = z.gather(1, targets[s : s + chunk].unsqueeze(1)).squeeze(1)
            lse = z.exp_().sum(dim=1).log_()
            total += ((lse - z_t) * coef[s : s + chunk]).sum()
        ctx.save_for_backward(h, weight, bias, targets, coef)
        ctx.chunk = chunk
        return total

    @staticmethod
    def backward(ctx, grad_out):
        h, weight, bias, targets, coef = ctx.saved_tensors
        chunk = ctx.chunk
        c = coef * grad_out
        grad_h = torch.empty_like(h)
        grad_w = torch.zeros_like(weight)
        grad_b = torch.zeros_like(bias) if bias is not None else None
        for s in range(0, h.shape[0], chunk):
            hc, cc = h[s : s + chunk], c[s : s + chunk].unsqueeze(1)
            z = hc @ weight.T
            if bias is not None:
                z += bias
            z -= z.amax(dim=1, keepdim=True)
            z.exp_()
            z *= cc / z.sum(dim=1, keepdim=True)  # c_i · softmax
            z.scatter_add_(1, targets[s : s + chunk].unsqueeze(1), -cc)  # − c_i · onehot
            grad_h[s : s + chunk] = z @ weight
            grad_w.addmm_(z.T, hc)
            if grad_b is not None:
                grad_b += z.sum(dim=0)
        return grad_h, grad_w, grad_b, None, None, None


def weighted_softmax_ce(
    h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """Full-softmax cross-entropy of scores ``h @ weight.T (+ bias)`` against class ``targets``,
    weighted per row: Σ_i w_i·CE_i / Σ_i w_i (0 when every weight is 0).

    ``h``: [P, D]; ``weight``: [N, D]; ``targets``: [P] in 0..N-1. A row with weight 0
    contributes exactly nothing, neither to the value nor to the normaliser, so its
    content has no influence on the gradient.
    """
    coef = (weights / weights.sum().clamp_min(1e-12)).to(h.dtype).detach()
    chunk = max(64, (1 << 22) // max(1, weight.shape[0]))  # ~16 MB of float32 logits per chunk
    return _LinearSoftmaxCE.apply(h, weight, bias, targets, coef, chunk)
