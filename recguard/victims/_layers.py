"""Shared building blocks: a pre-LayerNorm transformer block and a weighted cross-entropy."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _DropScale(torch.autograd.Function):
    """``x · keep · scale`` with ``keep`` boolean (the kept positions) and ``scale = 1/(1-p)``; the backward
    is the same product. Multiplying by the mask and then by the scale gives exactly the values of a
    product with a float ``{0, scale}`` tensor, without writing that tensor (one byte kept per element
    instead of four). The mask enters the product as its ``uint8`` view: a product with a ``bool`` tensor
    first copies it to float (on a ``[128, 200, 200]`` tensor, two threads: 2.3 ms against 1.7 ms)."""

    @staticmethod
    def forward(ctx, x, keep, scale: float):
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return (x * keep.view(torch.uint8)).mul_(scale)

    @staticmethod
    def backward(ctx, grad):
        (keep,) = ctx.saved_tensors
        return (grad * keep.view(torch.uint8)).mul_(ctx.scale), None, None


def keep_mask(shape: torch.Size, p: float, device: torch.device) -> torch.Tensor:
    """Boolean ``keep`` mask, False with rate ``p`` (rounded to 1/32,768). Four 15-bit draws come
    from each 64-bit random integer: on CPU this is several times cheaper than ``bernoulli_``, which
    the profiler showed as the largest elementwise cost of a SASRec step. Draws from torch's
    global generator, so ``torch_seeded`` fixes it."""
    n = 1
    for d in shape:
        n *= int(d)
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_()
    lanes = words.view(torch.int16)[:n].view(shape)
    return (lanes & 0x7FFF) >= int(round(p * 32768))


def fast_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout with :func:`keep_mask` (same expectation and variance as
    ``F.dropout``; a different random stream)."""
    if not training or p <= 0.0:
        return x
    return _DropScale.apply(x, keep_mask(x.shape, p, x.device), 1.0 / (1.0 - p))


class FastDropout(nn.Module):
    """:func:`fast_dropout` as a module (a drop-in for ``nn.Dropout``)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fast_dropout(x, self.p, self.training)


class TransformerBlock(nn.Module):
    """Pre-LayerNorm block: x + Attn(LN(x)); x + FFN(LN(x)).

    Attention takes a mask ``[B, 1, L, L]``: boolean (True = may attend) or its additive
    form (:func:`attention_bias`, computed once per forward by the models). Without attention
    dropout (eval, or ``p = 0``) it is ``scaled_dot_product_attention``; with it, the same
    math written out so the dropout on the attention weights uses :func:`fast_dropout`.
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
        self.drop = FastDropout(dropout)
        self.p = dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.proj(self.attend(self.ln1(x), mask)))  # [B, L, D]
        return self._ffn(x)

    def attend(self, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Multi-head attention of ``y`` [B, L, D] over itself, before the output projection ([B, L, D])."""
        b, l, d = y.shape
        q, k, v = self.qkv(y).view(b, l, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # 3 × [B, H, L, Dh]
        if mask.dtype == torch.bool:
            mask = attention_bias(mask, y.dtype)
        if self.training and self.p > 0:
            bh, dh = b * self.heads, d // self.heads
            bias = mask.expand(b, self.heads, l, l).reshape(bh, l, l)
            # scores = bias + q·kᵀ/√dh in one batched GEMM
            att = torch.baddbmm(bias, q.reshape(bh, l, dh), k.reshape(bh, l, dh).transpose(1, 2), alpha=dh**-0.5)
            a = torch.bmm(fast_dropout(att.softmax(dim=-1), self.p, True), v.reshape(bh, l, dh)).view(b, self.heads, l, dh)
        else:
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return a.transpose(1, 2).reshape(b, l, d)

    def _ffn(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop(self.ff2(self.drop(self.act(self.ff1(self.ln2(x))))))

    def forward_first(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """The block's output at position 0 only (``[B, D]``), with ``keep`` ([B, L], True at
        keys that may be attended) as the key mask of that one query.

        Equal to ``forward(x, attention_mask(keep, causal=False))[:, 0]`` whenever ``keep[:, 0]``
        is True, at a fraction of the cost when only the first state is read (a CLS token): keys
        and values are projected at every position, the query, attention, projection and FFN only
        at position 0. In training the dropout draws differ from the full forward's, not their law.
        """
        b, l, d = x.shape
        dh = d // self.heads
        y = self.ln1(x)
        w, bias = self.qkv.weight, self.qkv.bias
        q = F.linear(y[:, 0], w[:d], bias[:d]).view(b, self.heads, 1, dh)  # [B, H, 1, Dh]
        k, v = F.linear(y, w[d:], bias[d:]).view(b, l, 2, self.heads, dh).permute(2, 0, 3, 1, 4)  # 2 × [B, H, L, Dh]
        att = (q @ k.transpose(-1, -2)) * dh**-0.5  # [B, H, 1, L]
        att = att.masked_fill(~keep[:, None, None, :], float("-inf")).softmax(dim=-1)
        a = (fast_dropout(att, self.p, self.training) @ v).reshape(b, d)
        return self._ffn(x[:, 0] + self.drop(self.proj(a)))


class PostLNTransformerBlock(TransformerBlock):
    """Post-LayerNorm block, as HuggingFace's ``BertLayer`` computes it: ``x = LN1(x + Drop(Attn(x)))``;
    ``LN2(x + Drop(FFN(x)))``, with no dropout inside the FFN (the same parameters as the pre-LN block)."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.ln1(x + self.drop(self.proj(self.attend(x, mask))))
        return self.ln2(x + self.drop(self.ff2(self.act(self.ff1(x)))))

    def forward_first(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("forward_first is the pre-LayerNorm block's shortcut; call forward(x, mask)[:, 0]")


#: How a model counts positions in its ``max_len`` window: from the latest item (always the last
#: position) or from the first item (position 0, as right-padded published code counts them).
POSITIONS = ("recent", "first")


def window_position_embeddings(pos_emb: nn.Embedding, valid: torch.Tensor, count_from_first: bool) -> torch.Tensor:
    """Position embeddings of a left-padded batch whose real items are ``valid`` ([B, L]): ``[B, L, D]`` when
    counted from the first item (capped at the last position), else ``[1, L, D]`` counted from the right
    edge of the ``max_len`` window, so the latest item has position ``max_len − 1`` whatever the padding."""
    max_len = pos_emb.num_embeddings
    if count_from_first:
        return pos_emb((valid.cumsum(1) - 1).clamp(0, max_len - 1))
    return pos_emb(torch.arange(max_len - valid.shape[1], max_len, device=valid.device))[None]


def attention_bias(mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Additive form of a boolean attention mask: 0 where attending is allowed, -inf elsewhere."""
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, float("-inf"))


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


#: Logits per chunk of :func:`weighted_softmax_ce`, (CPU, GPU): 8 MB of float32 on a CPU, where chunks
#: that size stay in the allocator's reuse pool and in cache; 128 MB on a GPU, where every chunk costs
#: a dozen kernel launches (ML-1M's 25k predictions per batch: 3 chunks instead of 41).
LOGITS_PER_CHUNK = (1 << 21, 1 << 25)


class _LinearSoftmaxCE(torch.autograd.Function):
    """Σ_i c_i·CE(h_i·Wᵀ + b, t_i), computed in row chunks, its gradient too.

    The ``[P, N]`` logits are never materialised at once. When a gradient will be needed, each
    chunk's logits are shifted by their row maxima and exponentiated in place (the one exp pass:
    its row sums give the log-sum-exp, so the loss needs no pass of its own), scaled into
    c_i·(softmax − onehot) and multiplied out into the gradients of ``h``, ``W`` and ``b`` right
    away (with ``torch.logsumexp`` for the loss and a second exp pass for the softmax, the
    elementwise work took 60% longer per chunk on ML-1M). The loss is a graph's last node, so its backward only
    scales these by the incoming gradient: three matmuls per chunk instead of the four a
    backward that recomputes the logits needs, and nothing of size P×N is kept. On ML-1M
    (P ≈ 25k positions per batch, N = 3,416) the stock ``F.cross_entropy`` path spent ~45%
    of SASRec's CPU step in log-softmax kernels and page faults of 350 MB temporaries (torch
    profiler); chunks of a few MB stay in the allocator's reuse pool and the memory need no
    longer grows with the catalogue.
    """

    @staticmethod
    def forward(ctx, h, weight, bias, targets, coef, chunk: int, with_grad: bool):
        cc_dtype = coef.dtype
        total = torch.zeros((), dtype=cc_dtype, device=h.device)
        grad_h = torch.empty_like(h) if with_grad else None
        grad_w = torch.zeros_like(weight) if with_grad else None
        grad_b = torch.zeros_like(bias) if with_grad and bias is not None else None
        under_autocast = torch.is_autocast_enabled(h.device.type)
        for s in range(0, h.shape[0], chunk):
            hc = h[s : s + chunk]
            z = hc @ weight.T  # [C, N]
            if z.dtype != cc_dtype:  # a half-precision matmul under autocast: the softmax runs at the loss's precision
                z = z.to(cc_dtype)
            if bias is not None:
                z += bias
            tc = targets[s : s + chunk].unsqueeze(1)
            cc = coef[s : s + chunk]
            if not with_grad:
                total += ((torch.logsumexp(z, dim=1) - z.gather(1, tc).squeeze(1)) * cc).sum()
                continue
            target_logit = z.gather(1, tc).squeeze(1)
            row_max = z.amax(dim=1, keepdim=True)
            z -= row_max
            z.exp_()  # the only exp pass: its row sums give the log-sum-exp, the rows the softmax
            row_sum = z.sum(dim=1)
            total += ((row_max.squeeze(1) + row_sum.log() - target_logit) * cc).sum()
            z *= (cc / row_sum).unsqueeze(1)  # c_i · softmax
            cc = cc.unsqueeze(1)
            z.scatter_add_(1, tc, -cc)  # − c_i · onehot
            if grad_b is not None:
                grad_b += z.sum(dim=0)
            if not under_autocast:
                grad_h[s : s + chunk] = z @ weight
                grad_w.addmm_(z.T, hc)
            else:  # under autocast: half-precision products (z cast once), accumulated in the weight's precision
                z = z.to(torch.get_autocast_dtype(h.device.type))
                grad_h[s : s + chunk] = z @ weight
                grad_w += z.T @ hc
        ctx.grads = (grad_h, grad_w, grad_b)
        return total

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w, grad_b = ctx.grads
        if grad_h is None:
            raise RuntimeError("weighted_softmax_ce was computed without gradients (under torch.no_grad)")
        return grad_h * grad_out, grad_w * grad_out, None if grad_b is None else grad_b * grad_out, None, None, None, None


def weighted_softmax_ce(
    h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """Full-softmax cross-entropy of scores ``h @ weight.T (+ bias)`` against class ``targets``,
    weighted per row: Σ_i w_i·CE_i / Σ_i w_i (0 when every weight is 0).

    ``h``: [P, D]; ``weight``: [N, D]; ``targets``: [P] in 0..N-1. A row with weight 0
    contributes exactly nothing, neither to the value nor to the normaliser, so its
    content has no influence on the gradient.
    """
    loss_dtype = torch.promote_types(torch.float32, h.dtype)  # a half-precision h (autocast) still gets a float32 softmax
    coef = (weights / weights.sum().clamp_min(1e-12)).to(loss_dtype).detach()
    chunk = max(64, LOGITS_PER_CHUNK[h.device.type == "cuda"] // max(1, weight.shape[0]))
    with_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (h, weight, bias))
    return _LinearSoftmaxCE.apply(h, weight, bias, targets, coef, chunk, with_grad)


@torch.no_grad()
def reinitialise(module: torch.nn.Module, std: float) -> None:
    """Every Linear and Embedding weight ~ N(0, std); Linear biases and padding rows zero."""
    for m in module.modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Embedding)):
            m.weight.normal_(0.0, std)
            if isinstance(m, torch.nn.Linear) and m.bias is not None:
                m.bias.zero_()
            if isinstance(m, torch.nn.Embedding) and m.padding_idx is not None:
                m.weight[m.padding_idx].zero_()
