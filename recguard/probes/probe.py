"""``SAEProbe``: train a TopK SAE on a victim's activations, measure its fidelity, build and
validate a concept dictionary, explain single sequences and act on latents."""

from __future__ import annotations

import time
from pathlib import Path
from collections.abc import Iterable, Sequence

import numpy as np
import torch

from .._io import atomic_directory, atomic_write_json, read_json
from ..data import SequenceData, Split, as_split
from ..errors import ArtifactError, ConfigError
from ..metrics.ranking import ranks_from_scores, summarize_ranks
from ._sites import REPRESENTATION, Site
from .concepts import ConceptCatalogue, build_catalogue, build_dictionary, validate_dictionary
from .sae import SAEConfig, TopKSAE, load_sae, train_sae

__all__ = ["SAEProbe"]


class SAEProbe:
    """Sparse-autoencoder probe of a white-box victim (RecSAE).

    >>> probe = SAEProbe(victim, k=8, expansion=16).fit(data)        # doctest: +SKIP
    >>> probe.fidelity()["ndcg_recovered"]; probe.concepts()[:3]      # doctest: +SKIP
    >>> probe.explain(sequence); probe.ablate(latent=12, alpha=0.0)   # doctest: +SKIP

    Args:
        layer: activation site (``"representation"``, the default, or a name in ``victim.layers()``).
        k, expansion, width, epochs, lr, batch_size: SAE settings (:class:`SAEConfig`).
        train_on: ``"positions"`` (PROTOCOLS §5: every valid position's state from one pass per
            sequence) or ``"prefixes"`` (the last-position state of every prefix: exactly what
            is probed; SASRec's right-anchored position embeddings make the two differ, see
            docs/probes.md). ``"auto"`` (default): positions when the victim's position states
            equal its prefix states (checked on 16 training sequences at ``fit``; GRU4Rec),
            else prefixes.
        cache_mb: keep the training activations in memory when they fit in this many MB
            (computed once); otherwise they are recomputed batch by batch every epoch.
        prefixes: probe sequences per user for the concept dictionary: the user's full
            training sequence plus ``prefixes - 1`` random earlier cut points.
        holdout: share of users whose sequences are kept for validation only.
        context_items: history items (most recent) that, with the top-10 recommendations,
            form a sequence's context for concepts.
        top_n: top-activating sequences per latent used to pick its concept.
        seed: every random choice (SAE init, shuffling, cut points, user split, validation draws).
    """

    def __init__(self, victim, *, layer: str = REPRESENTATION, k: int = 8, expansion: int = 16, width: int | None = None,
                 epochs: int = 10, lr: float = 1e-3, batch_size: int = 256, prefixes: int = 5, holdout: float = 0.5,
                 context_items: int = 5, top_n: int = 20, train_on: str = "auto", cache_mb: float = 1024, seed: int = 0):
        if train_on not in ("auto", "positions", "prefixes"):
            raise ConfigError(f"must be 'auto', 'positions' or 'prefixes', got {train_on!r}", param="train_on")
        self.train_on = train_on
        self.cache_mb = float(cache_mb)
        if not 0 < holdout < 1:
            raise ConfigError(f"must be in (0, 1), got {holdout}", param="holdout")
        for name, v in (("prefixes", prefixes), ("context_items", context_items), ("top_n", top_n)):
            if int(v) < 1:
                raise ConfigError(f"must be >= 1, got {v}", param=name)
        self.victim = victim
        self.site = Site(victim, layer)
        self.layer = layer
        self.config = SAEConfig(width=width, expansion=expansion, k=k, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)
        self.prefixes, self.holdout, self.context_items, self.top_n = int(prefixes), float(holdout), int(context_items), int(top_n)
        self.seed = int(seed)

    # ------------------------------------------------------------------ fitting
    def fit(self, data: SequenceData | Split, *, progress: bool = False) -> SAEProbe:
        """Train the SAE on every valid position of the training sequences (streamed), then
        record the mean state (the mean-ablation baseline). ``data``: the victim's dataset or its split."""
        split = as_split(data)
        if split.full.num_items != self.victim.num_items:
            raise ConfigError(f"the data has {split.full.num_items} items but the victim knows {self.victim.num_items}", param="data")
        self.split_ = split
        if self.train_on == "auto":
            self.train_on = "positions" if self._positions_are_prefixes(split.train) else "prefixes"
        prefixes = self.train_on == "prefixes"
        t0 = time.perf_counter()
        stream = self.site.stream(split.train, rng=np.random.default_rng([self.seed, 1]), prefixes=prefixes)
        d = int(self.site.last(self.site.batch([[1]])).shape[1])
        rows_expected = int(np.minimum(split.train.lengths, self.victim.max_len).sum()) if (prefixes or self.site.causal) \
            else split.train.num_users
        if rows_expected * d * 4 / 2**20 <= self.cache_mb:
            chunks = stream
            if progress:
                from tqdm.auto import tqdm

                chunks = tqdm(stream, total=-(-split.train.num_users // stream.batch_users), desc=f"activations ({self.train_on})",
                              unit="batch", leave=False)
            stream = [c.contiguous() for c in chunks]  # computed once, replayed (chunk order reshuffled) every epoch
        self.sae_ = train_sae(stream, config=self.config, progress=progress)
        self.train_time_s_ = time.perf_counter() - t0
        total, rows = None, 0
        for chunk in (stream if isinstance(stream, list) else self.site.stream(split.train, batch_users=256, rng=0, prefixes=prefixes)):
            s = chunk.double().sum(0)
            total = s if total is None else total + s
            rows += len(chunk)
        self.mean_state_ = (total / rows).float()
        self.train_rows_ = rows
        self._reset_cache()
        return self

    def _positions_are_prefixes(self, train: SequenceData, n: int = 16) -> bool:
        """Whether the site's state at each position equals the probed state of the prefix ending
        there (then one pass per sequence yields exactly the probed distribution)."""
        if not self.site.causal:
            return False
        users = np.flatnonzero(train.lengths >= 2)[:n]
        if len(users) == 0:
            return False
        x = torch.from_numpy(train.padded(self.victim.max_len, users)).to(self.site.device)
        pos, pre = self.site.positions(x), self.site.prefix_states(x)
        return pos.shape == pre.shape and bool(torch.allclose(pos, pre, rtol=1e-4, atol=1e-4 * float(pre.abs().max().clamp_min(1))))

    def _reset_cache(self) -> None:
        self._probe_set = None
        self._concepts = None
        self._fidelity = None

    def _require(self) -> TopKSAE:
        if not hasattr(self, "sae_"):
            raise ConfigError("this probe is not fitted yet; call .fit(data) or SAEProbe.load(...)", param="probe")
        return self.sae_

    # ---------------------------------------------------------------- utilities
    def encode(self, seqs) -> torch.Tensor:
        """Latent activations ``[B, width]`` at the last position of each sequence."""
        sae = self._require()
        with torch.no_grad():
            return sae.encode(self.site.last(self.site.batch(seqs)).cpu())

    def _batches(self, x: np.ndarray, size: int = 512) -> Iterable[torch.Tensor]:
        for s in range(0, len(x), size):
            yield torch.from_numpy(x[s : s + size]).to(self.site.device)

    def _spliced(self, edit_codes=None, keep_error: bool = False):
        """An edit of the site state: encode, optionally change the codes, decode, optionally add the error back."""
        sae = self.sae_

        def edit(state: torch.Tensor) -> torch.Tensor:
            x = state.float().cpu()
            z = sae.encode(x)
            x_hat = sae.decode(z)
            if edit_codes is not None:
                out = sae.decode(edit_codes(z))
                if keep_error:
                    out = out + (x - x_hat)
            else:
                out = x_hat
            return out.to(state.dtype).to(state.device)

        return edit

    def _eval(self, edit, which: str = "test", users: np.ndarray | None = None, k: int = 10):
        split = self.split_
        x, y = split.inputs(which, self.victim.max_len)
        rows = np.arange(len(y))
        if users is not None:
            rows = np.asarray(users)
            x, y = x[rows], y[rows]
        ranks, tops = [], []
        for s, xb in zip(range(0, len(x), 512), self._batches(x)):
            scores = self.site.scores(xb, edit)
            yb = torch.from_numpy(y[s : s + len(xb)]).to(scores.device)
            seen = torch.from_numpy(split.history(which, rows[s : s + len(xb)])).to(scores.device)  # as evaluate masks
            ranks.append(ranks_from_scores(scores, yb, seen).cpu().numpy())
            masked = scores.scatter(1, seen, float("-inf"))
            tops.append(masked.topk(k, dim=1).indices.cpu().numpy())
        return np.concatenate(ranks), np.concatenate(tops)

    # ----------------------------------------------------------------- fidelity
    def fidelity(self) -> dict:
        """FVU and L0 at the probed (last) position of the test inputs; dead-latent fraction (training);
        NDCG@10 clean / with the reconstruction spliced in / with the mean state; NDCG recovered."""
        sae = self._require()
        if self._fidelity is not None:
            return self._fidelity
        x_all, _ = self.split_.inputs("test", self.victim.max_len)
        states = torch.cat([self.site.last(xb).cpu() for xb in self._batches(x_all)])
        with torch.no_grad():
            z = sae.encode(states)
            rec = sae.decode(z)
        sq_err = float((states - rec).pow(2).sum())
        sq_tot = float((states - states.mean(0)).pow(2).sum())
        l0 = float((z > 0).sum(1).float().mean())
        # dead = no firing in the last dead_after training rows (every position); silent at probe =
        # never fires at the last position of a test input or a probe sequence
        fired = (z > 0).any(0) | torch.from_numpy((self._probe()["acts"] > 0).any(0))
        clean, _ = self._eval(None)
        spliced, _ = self._eval(self._spliced())
        mean = self.mean_state_
        ablated, _ = self._eval(lambda s: mean.to(s.device).expand_as(s).clone())
        nd = {name: summarize_ranks(r, (10,))["NDCG@10"] for name, r in (("clean", clean), ("sae", spliced), ("ablated", ablated))}
        denom = nd["clean"] - nd["ablated"]
        self._fidelity = {
            "layer": self.layer, "d_in": sae.d_in, "width": sae.width, "k": sae.k,
            "fvu": sq_err / max(sq_tot, 1e-12), "l0": l0,
            "dead_fraction": float((sae.since_fired >= sae.config.dead_after).float().mean()),
            "silent_at_probe_fraction": float(1 - fired.float().mean()),
            "ndcg_clean": nd["clean"], "ndcg_sae": nd["sae"], "ndcg_mean_ablated": nd["ablated"],
            "ndcg_recovered": (nd["sae"] - nd["ablated"]) / denom if abs(denom) > 1e-12 else None,
            "train_rows": self.train_rows_, "train_time_s": getattr(self, "train_time_s_", None),
            "train_history": getattr(sae, "history_", []), "test_users": int(len(x_all)),
        }
        return self._fidelity

    # ------------------------------------------------------------ probe sequences
    def _probe(self) -> dict:
        """Probe sequences (full training sequences plus random earlier prefixes), their last
        history items, top-10 recommendations and latent activations; users split into a
        dictionary-building and a held-out half."""
        if self._probe_set is not None:
            return self._probe_set
        sae = self._require()
        train = self.split_.train
        gen = np.random.default_rng([self.seed, 2])
        lengths = train.lengths
        users = np.flatnonzero(lengths >= 2)
        if len(users) < 4:
            raise ConfigError("need at least 4 users with 2+ items to build a concept dictionary", param="data")
        seq_user, cut = [users], [lengths[users]]
        for _ in range(self.prefixes - 1):
            seq_user.append(users)
            cut.append(1 + (gen.random(len(users)) * (lengths[users] - 1)).astype(np.int64))  # 1..len-1 items
        seq_user, cut = np.concatenate(seq_user), np.concatenate(cut)
        from ..data import pad_from_csr

        starts = train.offsets[seq_user] + np.maximum(cut - self.victim.max_len, 0)
        x = pad_from_csr(train.items, starts, np.minimum(cut, self.victim.max_len), self.victim.max_len)
        acts, recs = [], []
        for xb in self._batches(x):
            state = self.site.last(xb)
            with torch.no_grad():
                acts.append(sae.encode(state.cpu()).numpy())
            scores = self.site.scores(xb, None).scatter(1, xb, float("-inf"))
            recs.append(scores.topk(10, dim=1).indices.cpu().numpy())
        held_users = gen.permutation(users)[: int(round(self.holdout * len(users)))]
        held = np.isin(seq_user, held_users)
        self._probe_set = {"x": x, "user": seq_user, "acts": np.concatenate(acts).astype(np.float32), "recs": np.concatenate(recs),
                           "history": x[:, -self.context_items:], "held": held}
        return self._probe_set

    # ----------------------------------------------------------------- concepts
    def catalogue(self) -> ConceptCatalogue:
        if getattr(self, "_catalogue", None) is None:
            self._catalogue = build_catalogue(self.split_.train)  # train keeps the item metadata; counts without held-out items
        return self._catalogue

    def concepts(self, *, lm: str | Path | None = None, max_new_tokens: int = 24) -> list[dict]:
        """One entry per latent: firing rate, best concept with its enrichment evidence (top
        items, top recommended items, shares), held-out confidence and AUC, ``interpretable``
        (confidence >= 0.8) and a ``description`` (the concept, or an LM's line when ``lm`` is
        a local Hugging Face causal-LM directory)."""
        if self._concepts is None:
            titles = self.split_.full.meta.titles if self.split_.full.meta is not None and self.split_.full.meta.has_titles else None
            entries = self._dictionary(np.random.default_rng([self.seed, 3]), titles=titles)
            for e in entries:
                e["interpretable"] = _interpretable(e)
                e["description"] = e.get("concept")
            self._concepts = entries
        if lm is not None:
            from .describe import describe_latents

            describe_latents(self._concepts, lm, max_new_tokens=max_new_tokens)
        return self._concepts

    def null_control(self, *, seed: int = 0) -> dict:
        """The dictionary pipeline on activations shuffled across probe sequences (within the
        building and the held-out half separately): what share of latents would pass by
        chance with this concept vocabulary. Compare with :meth:`dictionary_summary`."""
        entries = self._dictionary(np.random.default_rng([self.seed, seed, 4]), shuffle=True)
        n_int = sum(1 for e in entries if _interpretable(e))
        scored = [e["confidence"] for e in entries if e.get("confidence") is not None]
        return {"latents": len(entries), "interpretable": n_int, "interpretable_share": n_int / max(len(entries), 1),
                "mean_confidence": float(np.mean(scored)) if scored else None}

    def _dictionary(self, gen: np.random.Generator, *, titles=None, shuffle: bool = False) -> list[dict]:
        """Build the dictionary on the building half, validate it on the held-out half (``gen``
        draws the non-firing validation sequences; with ``shuffle`` it first permutes each
        half's activations across sequences, the null control)."""
        p = self._probe()
        cat = self.catalogue()
        if "strength" not in p:
            p["strength"] = cat.strength(np.concatenate([p["history"], p["recs"]], axis=1))
        strength, build, held = p["strength"], ~p["held"], p["held"]
        a_build, a_held = p["acts"][build], p["acts"][held]
        if shuffle:
            a_build = a_build[gen.permutation(len(a_build))]
            a_held = a_held[gen.permutation(len(a_held))]
        entries = build_dictionary(a_build, strength[build], cat, p["history"][build], p["recs"][build],
                                   top_n=self.top_n, titles=titles)
        return validate_dictionary(entries, a_held, strength[held], rng=gen)

    def dictionary_summary(self) -> dict:
        """Counts over the dictionary: latents, alive (fire on a probe sequence), with a concept,
        interpretable (confidence >= 0.8) and their shares, mean confidence and AUC, by concept kind."""
        entries = self.concepts()
        alive = [e for e in entries if e["firing"] > 0]
        scored = [e for e in entries if e.get("confidence") is not None]
        aucs = [e["auc"] for e in scored if e.get("auc") is not None]
        n_int = sum(e["interpretable"] for e in entries)
        return {
            "latents": len(entries), "alive": len(alive), "with_concept": len(scored), "interpretable": n_int,
            "interpretable_share": n_int / max(len(entries), 1), "interpretable_share_of_alive": n_int / max(len(alive), 1),
            "mean_confidence": float(np.mean([e["confidence"] for e in scored])) if scored else None,
            "mean_auc": float(np.mean(aucs)) if aucs else None,
            "by_kind": {k: sum(1 for e in entries if e["interpretable"] and e.get("kind") == k)
                        for k in ("genre", "decade", "title", "popularity")},
        }

    # ------------------------------------------------------------------ explain
    def explain(self, sequence: Sequence[int], *, top: int = 8) -> dict:
        """The active latents of one sequence (last position), each with its activation, its
        concept and its contribution ``z_j * (d_j . e_i)`` to the top recommended item's score
        (exact decomposition of the reconstruction at the representation site)."""
        sae = self._require()
        x = self.site.batch([list(sequence)])
        z = self.encode(x)[0]
        scores = self.site.scores(x, None)[0].scatter(0, x[0], float("-inf"))
        item = int(scores.argmax())
        emb = self.victim.item_embeddings().cpu().float()[item]
        contrib = z * (sae.W_dec.detach() @ emb)
        active = torch.nonzero(z > 0).ravel().tolist()
        active.sort(key=lambda j: -float(z[j]))
        entries = self.concepts()  # built once, cached
        rows = []
        for j in active[:top]:
            rows.append({"latent": j, "activation": float(z[j]),
                         "contribution_to_top_item" if self.layer == REPRESENTATION else "decoder_alignment": float(contrib[j]),
                         "concept": entries[j].get("concept") if entries else None,
                         "confidence": entries[j].get("confidence") if entries else None})
        return {"top_item": item, "latents": rows, "active": len(active)}

    # ------------------------------------------------------------- intervention
    def ablate(self, latent: int, alpha: float = 0.0, *, add: float = 0.0, users: np.ndarray | None = None) -> dict:
        """Scale one latent (``z_j <- alpha * z_j + add``; alpha = 0 removes it), decode with the
        SAE error added back, re-score the test inputs. Reported over the users where the
        latent fires (or every user when ``add`` is non-zero): change of NDCG@10, of the share of
        top-10 items carrying the latent's concept, and the mean Jaccard overlap of the top-10 lists."""
        sae = self._require()
        if not 0 <= int(latent) < sae.width:
            raise ConfigError(f"latent must be in [0, {sae.width}), got {latent}", param="latent")
        j = int(latent)
        x_all, _ = self.split_.inputs("test", self.victim.max_len)
        if users is None:
            if add == 0:
                z = torch.cat([self.encode(xb) for xb in self._batches(x_all)])
                users = np.flatnonzero((z[:, j] > 0).numpy())
            else:
                users = np.arange(len(x_all))
        users = np.asarray(users, dtype=np.int64)
        out = {"latent": j, "alpha": float(alpha), "add": float(add), "users": int(len(users))}
        if len(users) == 0:
            return {**out, "delta_ndcg@10": None, "note": "the latent fires on no test input"}

        def change(codes: torch.Tensor) -> torch.Tensor:
            codes = codes.clone()
            codes[:, j] = codes[:, j] * alpha + add
            return codes

        base_r, base_top = self._eval(self._spliced(lambda c: c, keep_error=True), users=users)
        new_r, new_top = self._eval(self._spliced(change, keep_error=True), users=users)
        nd0, nd1 = summarize_ranks(base_r, (10,))["NDCG@10"], summarize_ranks(new_r, (10,))["NDCG@10"]
        inter = np.array([len(set(a) & set(b)) for a, b in zip(base_top, new_top)])
        jacc = float(np.mean(inter / (2 * base_top.shape[1] - inter)))
        out.update({"ndcg@10": nd0, "ndcg@10_after": nd1, "delta_ndcg@10": nd1 - nd0, "jaccard@10": jacc})
        entry = self._concepts[j] if self._concepts is not None else None
        if entry is not None and entry.get("concept") is not None:
            mask = self.catalogue().matrix[:, entry["concept_index"]]
            before, after = float(mask[base_top].mean()), float(mask[new_top].mean())
            out.update({"concept": entry["concept"], "concept_share@10": before, "concept_share@10_after": after,
                        "delta_concept_share@10": after - before})
        return out

    def steer(self, latent: int, alpha: float = 2.0, *, add: float = 0.0, users: np.ndarray | None = None) -> dict:
        """Amplify (alpha > 1) or switch on (``add`` > 0) one latent; same report as :meth:`ablate`."""
        return self.ablate(latent, alpha, add=add, users=users)

    # ------------------------------------------------------------ robustness link
    def poisoning_latents(self, poisoned: SequenceData, fake_users: np.ndarray, targets: Sequence[int] = (), *, top: int = 10) -> dict:
        """Which latents fire disproportionately on injected fake users, and on sequences whose
        last items include a target item, in a poisoned dataset.

        For each latent: firing rate on fake vs genuine users (last position of each user's
        sequence), their ratio, and the ROC-AUC of its activation for "is fake"; for targets,
        firing rate on genuine sequences with a target among their last ``context_items``
        items vs the rest, and the alignment of its decoder direction with the targets'
        embeddings (how much it pushes them up). Returns the ``top`` latents of each ranking."""
        from sklearn.metrics import roc_auc_score

        sae = self._require()
        fake = np.zeros(poisoned.num_users, dtype=bool)
        fake[np.asarray(fake_users, dtype=np.int64)] = True
        if not fake.any() or fake.all():
            raise ConfigError("need both fake and genuine users", param="fake_users")
        x = poisoned.padded(self.victim.max_len)
        z = torch.cat([self.encode(xb) for xb in self._batches(x)]).numpy()
        on = z > 0
        rate_fake, rate_real = on[fake].mean(0), on[~fake].mean(0)
        ratio = (rate_fake + 1e-3) / (rate_real + 1e-3)
        auc = np.array([roc_auc_score(fake, z[:, j]) if on[:, j].any() else 0.5 for j in range(z.shape[1])])
        names = self._concepts
        def row(j, **extra):
            return {"latent": int(j), "concept": names[j].get("concept") if names else None, **extra}
        res = {"fake_users": int(fake.sum()), "genuine_users": int((~fake).sum()),
               "fake": [row(j, rate_fake=float(rate_fake[j]), rate_genuine=float(rate_real[j]), ratio=float(ratio[j]), auc=float(auc[j]))
                        for j in np.argsort(-auc, kind="stable")[:top]]}
        targets = [int(t) for t in targets]
        if targets:
            recent = x[:, -self.context_items:]
            hit = np.isin(recent, targets).any(1) & ~fake
            emb = self.victim.item_embeddings().cpu().float()
            align = (sae.W_dec.detach() @ emb[targets].T).mean(1).numpy()
            r_hit = on[hit].mean(0) if hit.any() else np.zeros(z.shape[1])
            r_rest = on[~hit & ~fake].mean(0)
            t_ratio = (r_hit + 1e-3) / (r_rest + 1e-3)
            res["targets"] = targets
            res["target_sequences"] = int(hit.sum())
            res["on_targets"] = [row(j, rate_with_target=float(r_hit[j]), rate_without=float(r_rest[j]), ratio=float(t_ratio[j]),
                                     decoder_alignment=float(align[j])) for j in np.argsort(-t_ratio, kind="stable")[:top]]
            res["pushes_targets"] = [row(j, decoder_alignment=float(align[j]), rate_fake=float(rate_fake[j]),
                                         rate_genuine=float(rate_real[j])) for j in np.argsort(-align, kind="stable")[:top]]
        return res

    # ---------------------------------------------------------------- artifacts
    def save(self, directory: str | Path, *, overwrite: bool = False) -> Path:
        """``sae.safetensors`` + ``sae.json`` (SAE) and ``probe.json`` (settings, mean state,
        the concept dictionary if built, fidelity if measured); written atomically. An existing
        folder is replaced only if it is a saved probe and ``overwrite`` is set."""
        sae = self._require()
        directory = Path(directory)
        meta = {"layer": self.layer, "victim_architecture": self.site.arch,
                "victim_fingerprint": getattr(self.victim, "data_fingerprint_", None)}
        with atomic_directory(directory, kind="probe", overwrite=overwrite) as tmp:
            sae.save(tmp / "sae", meta=meta)
            for f in ("sae.safetensors", "sae.json"):
                (tmp / "sae" / f).replace(tmp / f)
            (tmp / "sae").rmdir()
            atomic_write_json(tmp / "probe.json", {
                "format": "recguard-probe/1", "layer": self.layer, "train_on": self.train_on, "prefixes": self.prefixes,
                "holdout": self.holdout,
                "context_items": self.context_items, "top_n": self.top_n, "seed": self.seed,
                "mean_state": self.mean_state_.tolist(), "train_rows": self.train_rows_,
                "train_time_s": getattr(self, "train_time_s_", None), "history": getattr(sae, "history_", []),
                "concepts": self._concepts, "fidelity": self._fidelity,
            })
        return directory

    @classmethod
    def load(cls, directory: str | Path, victim, data: SequenceData | Split) -> SAEProbe:
        """Re-attach a saved probe to its victim and dataset (no retraining)."""
        directory = Path(directory)
        f = directory / "probe.json"
        if not f.exists():
            raise ArtifactError(f"{f}: missing; is {directory} a folder written by SAEProbe.save?")
        info = read_json(f, ArtifactError)
        if not isinstance(info, dict) or info.get("format") != "recguard-probe/1":
            raise ArtifactError(f"{f}: not a saved probe (expected an object with \"format\": \"recguard-probe/1\")")
        sae, meta = load_sae(directory)
        try:
            return cls._attach(info, sae, meta, victim, data, directory)
        except (KeyError, TypeError, ValueError) as exc:  # ValueError includes ConfigError from bad settings
            raise ArtifactError(f"{f}: missing or malformed entry ({type(exc).__name__}: {exc})") from None

    @classmethod
    def _attach(cls, info: dict, sae, meta: dict, victim, data, directory: Path) -> SAEProbe:
        fp = meta.get("victim_fingerprint")
        if fp and getattr(victim, "data_fingerprint_", None) and fp != victim.data_fingerprint_:
            raise ArtifactError(f"{directory}: this probe was trained on a victim of another dataset (fingerprint {fp[:12]})")
        c = sae.config
        probe = cls(victim, layer=info["layer"], k=c.k, expansion=c.expansion, width=c.width, epochs=c.epochs, lr=c.lr,
                    batch_size=c.batch_size, prefixes=info["prefixes"], holdout=info["holdout"],
                    context_items=info["context_items"], top_n=info["top_n"], train_on=info.get("train_on", "positions"),
                    seed=info["seed"])
        probe.split_ = as_split(data)
        probe.sae_ = sae
        sae.history_ = info.get("history", [])
        probe.mean_state_ = torch.tensor(info["mean_state"], dtype=torch.float32)
        probe.train_rows_ = info["train_rows"]
        probe.train_time_s_ = info.get("train_time_s")
        probe._reset_cache()
        probe._concepts = info.get("concepts")
        probe._fidelity = info.get("fidelity")
        return probe


def _interpretable(entry: dict) -> bool:
    """RecSAE's criterion: held-out confidence of at least 0.8."""
    return entry.get("confidence") is not None and entry["confidence"] >= 0.8
