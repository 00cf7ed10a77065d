"""TopK sparse autoencoder (PROTOCOLS §5) and its trainer.

``z = TopK_k(ReLU(W_enc (x - b_dec) + b_enc))``, ``x_hat = z W_dec + b_dec``. Decoder rows
(one per latent) have unit norm and start as the encoder's rows. Loss = FVU (MSE normalised
by the batch variance of ``x``) + ``aux_coef`` x AuxK, where AuxK reconstructs the *detached*
residual ``x - x_hat`` from the ``k_aux`` most active dead latents.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from collections.abc import Iterable, Iterator

import numpy as np
import torch
from torch import nn

from .._finite import check_loss, check_tensors
from .._io import atomic_directory, atomic_write_json, read_json
from .._rng import RNGLike, derive_seed, torch_seeded
from ..errors import ArtifactError, ConfigError

__all__ = ["SAEConfig", "TopKSAE", "train_sae", "load_sae"]


@dataclass(frozen=True)
class SAEConfig:
    """Settings of a :class:`TopKSAE` and of its training.

    Attributes:
        width: number of latents; ``None`` = ``expansion`` x the input dimension.
        expansion: latents per input dimension when ``width`` is not given (16).
        k: active latents per input (TopK; 8, PROTOCOLS' default; 16 and 32 also common).
        k_aux: dead latents used by the AuxK loss; ``None`` = half the input dimension.
        aux_coef: weight of the AuxK loss (1/32).
        dead_after: a latent that has not fired on this many training rows counts as dead.
        lr: Adam learning rate. epochs: passes over a re-iterable source.
        batch_size: rows per optimiser step. seed: weight initialisation and shuffling.
    """

    width: int | None = None
    expansion: int = 16
    k: int = 8
    k_aux: int | None = None
    aux_coef: float = 1 / 32
    dead_after: int = 20_000
    lr: float = 1e-3
    epochs: int = 10
    batch_size: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        from .._params import check_field_types

        check_field_types(self)
        for name in ("expansion", "k", "dead_after", "epochs", "batch_size"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"must be a positive integer, got {v!r}", param=name)
        if self.width is not None and (not isinstance(self.width, (int, np.integer)) or self.width < self.k):
            raise ConfigError(f"must be an integer >= k ({self.k}), got {self.width!r}", param="width")
        if self.k_aux is not None and (not isinstance(self.k_aux, (int, np.integer)) or self.k_aux < 1):
            raise ConfigError(f"must be a positive integer, got {self.k_aux!r}", param="k_aux")
        if not self.lr > 0:
            raise ConfigError(f"must be > 0, got {self.lr!r}", param="lr")
        if not self.aux_coef >= 0:
            raise ConfigError(f"must be >= 0, got {self.aux_coef!r}", param="aux_coef")

    def resolved_width(self, d_in: int) -> int:
        return int(self.width) if self.width is not None else int(self.expansion) * int(d_in)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SAEConfig:
        if not isinstance(d, dict):
            raise ConfigError(f"SAE settings must be a table of KEY = VALUE, got {type(d).__name__}", param="sae")
        known = {f.name for f in fields(cls)}
        bad = set(d) - known
        if bad:
            raise ConfigError(f"unknown SAE option(s) {', '.join(sorted(bad))}; valid: {', '.join(sorted(known))}", param="sae")
        return cls(**d)


class TopKSAE(nn.Module):
    """TopK sparse autoencoder over ``d_in``-dimensional activations.

    ``encode(x)`` gives the sparse codes ``[B, width]``; ``decode(z)`` the reconstruction.
    ``fired_`` counts, per latent, the training rows since it last fired (dead-latent tracking).
    """

    def __init__(self, d_in: int, config: SAEConfig | None = None):
        super().__init__()
        self.config = config or SAEConfig()
        self.d_in = int(d_in)
        self.width = self.config.resolved_width(d_in)
        if self.config.k > self.width:
            raise ConfigError(f"k={self.config.k} exceeds the width {self.width}", param="k")
        gen = torch.Generator().manual_seed(int(self.config.seed))
        w = torch.randn(self.width, self.d_in, generator=gen)
        w = w / w.norm(dim=1, keepdim=True)
        self.W_enc = nn.Parameter(w.clone())  # [width, d]
        self.b_enc = nn.Parameter(torch.zeros(self.width))
        self.W_dec = nn.Parameter(w.clone())  # [width, d], unit rows, = encoder rows at start
        self.b_dec = nn.Parameter(torch.zeros(self.d_in))
        self.register_buffer("since_fired", torch.zeros(self.width, dtype=torch.long))

    @property
    def k(self) -> int:
        return int(self.config.k)

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu((x - self.b_dec) @ self.W_enc.T + self.b_enc)

    def _topk(self, pre: torch.Tensor, k: int) -> torch.Tensor:
        vals, idx = pre.topk(k, dim=-1, sorted=False)
        return torch.zeros_like(pre).scatter_(-1, idx, vals)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Sparse codes ``[B, width]`` (at most ``k`` non-zeros per row)."""
        return self._topk(self.pre_activations(x), self.k)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Training loss on a batch: FVU + aux_coef x AuxK (and updates the dead-latent counters)."""
        pre = self.pre_activations(x)
        z = self._topk(pre, self.k)
        x_hat = z @ self.W_dec + self.b_dec
        var = (x - x.mean(0)).pow(2).sum().clamp_min(1e-12)
        fvu = (x - x_hat).pow(2).sum() / var
        with torch.no_grad():
            fired = (z > 0).any(0)
            self.since_fired += x.shape[0]
            self.since_fired[fired] = 0
            dead = self.since_fired >= self.config.dead_after
        aux = torch.zeros((), device=x.device)
        n_dead = int(dead.sum())
        if n_dead and self.config.aux_coef > 0:
            k_aux = min(int(self.config.k_aux or max(1, self.d_in // 2)), n_dead)
            resid = (x - x_hat).detach()
            masked = pre.masked_fill(~dead[None], 0.0)
            e_hat = self._topk(masked, k_aux) @ self.W_dec
            r_var = (resid - resid.mean(0)).pow(2).sum().clamp_min(1e-12)
            aux = (resid - e_hat).pow(2).sum() / r_var
            if not torch.isfinite(aux):
                aux = torch.zeros((), device=x.device)
        total = fvu + self.config.aux_coef * aux
        return total, {"fvu": float(fvu.detach()), "aux": float(aux.detach()), "dead": n_dead}

    @torch.no_grad()
    def normalize_decoder_(self) -> None:
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8))

    @torch.no_grad()
    def project_decoder_grad_(self) -> None:
        """Remove the gradient component parallel to each unit decoder row (keeps the norm fixed to first order)."""
        if self.W_dec.grad is not None:
            g = self.W_dec.grad
            g.sub_((g * self.W_dec).sum(1, keepdim=True) * self.W_dec)

    # ----------------------------------------------------------------- artifacts
    def save(self, directory: str | Path, *, meta: dict | None = None, overwrite: bool = False) -> Path:
        """``sae.safetensors`` + ``sae.json`` (config, dimensions, extra ``meta``), written atomically;
        an existing folder is replaced only if it is a saved SAE and ``overwrite`` is set."""
        from safetensors.torch import save_file

        directory = Path(directory)
        with atomic_directory(directory, kind="sae", overwrite=overwrite) as tmp:
            state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
            save_file(state, str(tmp / "sae.safetensors"))
            atomic_write_json(tmp / "sae.json", {"format": "recguard-sae/1", "d_in": self.d_in, "width": self.width,
                                                  "config": self.config.to_dict(), "meta": meta or {}})
        return directory


def load_sae(directory: str | Path) -> tuple[TopKSAE, dict]:
    """Load an SAE saved by :meth:`TopKSAE.save`; returns ``(sae, meta)``."""
    from safetensors.torch import load_file

    directory = Path(directory)
    cfg_file, w_file = directory / "sae.json", directory / "sae.safetensors"
    for f in (cfg_file, w_file):
        if not f.exists():
            raise ArtifactError(f"{f}: missing; is {directory} a folder written by TopKSAE.save / SAEProbe.save?")
    info = read_json(cfg_file, ArtifactError)
    if not isinstance(info, dict) or info.get("format") != "recguard-sae/1":
        raise ArtifactError(f"{cfg_file}: not a saved SAE (expected an object with \"format\": \"recguard-sae/1\")")
    d_in, meta = info.get("d_in"), info.get("meta", {})
    if isinstance(d_in, bool) or not isinstance(d_in, int) or d_in < 1 or not isinstance(meta, dict):
        raise ArtifactError(f"{cfg_file}: 'd_in' must be a positive integer and 'meta' an object")
    try:
        config = SAEConfig.from_dict(info.get("config"))
    except ConfigError as exc:
        raise ArtifactError(f"{cfg_file}: bad 'config': {exc}") from None
    try:
        state = load_file(str(w_file))
    except Exception as exc:
        raise ArtifactError(f"{w_file}: cannot read safetensors ({exc})") from None
    check_tensors(state, str(w_file))
    with torch.device("meta"):  # shapes first, without allocating what a corrupt config asks for
        shell = TopKSAE(d_in, config)
    want = {k: tuple(v.shape) for k, v in shell.state_dict().items()}
    if want != {k: tuple(v.shape) for k, v in state.items()}:
        raise ArtifactError(f"{w_file}: the tensors do not match the SAE described in {cfg_file.name}")
    sae = TopKSAE(d_in, config)
    sae.load_state_dict(state)
    sae.eval()
    return sae, meta


def _passes(source, epochs: int, gen: torch.Generator) -> Iterator[Iterable[torch.Tensor]]:
    """One iterable per epoch. A tensor or a re-iterable object is replayed ``epochs`` times
    (a list's chunk order is reshuffled each time); a one-shot iterator (a generator) is a
    stream and is consumed once."""
    if callable(source):
        for _ in range(epochs):
            yield source()
    elif isinstance(source, torch.Tensor):
        for _ in range(epochs):
            yield (source,)
    elif iter(source) is source:
        yield source
    elif isinstance(source, (list, tuple)):
        for _ in range(epochs):
            yield [source[i] for i in torch.randperm(len(source), generator=gen).tolist()]
    else:
        for _ in range(epochs):
            yield source


def _rows(chunks: Iterable[torch.Tensor], batch_size: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    """Re-batch a stream of ``[n, d]`` chunks into shuffled ``batch_size`` rows (shuffled within each chunk)."""
    carry = None
    for chunk in chunks:
        chunk = torch.as_tensor(chunk, dtype=torch.float32)
        if chunk.ndim != 2:
            raise ConfigError(f"activation chunks must be [n, d] tensors, got shape {tuple(chunk.shape)}", param="source")
        chunk = chunk[torch.randperm(len(chunk), generator=gen)]
        if carry is not None:
            chunk = torch.cat([carry, chunk])
        n_full = len(chunk) // batch_size * batch_size
        for s in range(0, n_full, batch_size):
            yield chunk[s : s + batch_size]
        carry = chunk[n_full:] if n_full < len(chunk) else None
    if carry is not None and len(carry) > 1:
        yield carry


def train_sae(
    source,
    d_in: int | None = None,
    config: SAEConfig | None = None,
    *,
    sae: TopKSAE | None = None,
    progress: bool = False,
    rng: RNGLike = None,
) -> TopKSAE:
    """Train a :class:`TopKSAE` on activations.

    Args:
        source: a ``[n, d]`` tensor, any re-iterable of ``[n_i, d]`` chunks (replayed each
            epoch), a zero-argument callable returning such an iterable, or a one-shot
            iterator (one pass, whatever ``epochs`` says). Chunks are shuffled and re-batched.
        d_in: input dimension (taken from the first chunk when omitted).
        rng: overrides ``config.seed`` for the shuffling (weights always follow ``config.seed``).
    Returns the trained SAE in eval mode; ``sae.history_`` holds per-epoch mean FVU, AuxK and dead count.
    """
    config = config or SAEConfig()
    seed = int(config.seed) if rng is None else derive_seed(rng)
    gen = torch.Generator().manual_seed(seed)
    history: list[dict] = []
    opt = None
    with torch_seeded(seed):
        for epoch, chunks in enumerate(_passes(source, int(config.epochs), gen)):
            sums = {"fvu": 0.0, "aux": 0.0, "rows": 0, "steps": 0, "dead": 0}
            bar = None
            if progress:
                from tqdm.auto import tqdm

                bar = tqdm(desc=f"SAE epoch {epoch + 1}", unit="row", unit_scale=True, leave=False)
            for xb in _rows(chunks, int(config.batch_size), gen):
                if sae is None:
                    sae = TopKSAE(int(d_in or xb.shape[1]), config)
                    with torch.no_grad():
                        sae.b_dec.copy_(xb.mean(0))  # start the decoder bias at the data mean
                if xb.shape[1] != sae.d_in:
                    raise ConfigError(f"activation width {xb.shape[1]} != the SAE's input width {sae.d_in}", param="source")
                if opt is None:
                    sae.train()
                    opt = torch.optim.Adam(sae.parameters(), lr=float(config.lr))
                loss, parts = sae.loss(xb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                sae.project_decoder_grad_()
                opt.step()
                sae.normalize_decoder_()
                n = len(xb)
                sums["fvu"] += parts["fvu"] * n
                sums["aux"] += parts["aux"] * n
                sums["rows"] += n
                sums["steps"] += 1
                sums["dead"] = parts["dead"]
                if bar is not None:
                    bar.update(n)
                    bar.set_postfix(fvu=f"{parts['fvu']:.4f}", dead=parts["dead"], refresh=False)
            if bar is not None:
                bar.close()
            if sums["rows"] == 0:
                raise ConfigError("the activation source yielded no rows", param="source")
            check_loss(sums["fvu"], "SAE training", epoch=epoch + 1, lr=float(config.lr))
            history.append({"epoch": epoch + 1, "fvu": sums["fvu"] / sums["rows"], "aux": sums["aux"] / sums["rows"],
                            "dead": sums["dead"], "rows": sums["rows"], "steps": sums["steps"]})
    if sae is None:
        raise ConfigError("the activation source yielded no rows", param="source")
    sae.eval()
    sae.history_ = history
    return sae
