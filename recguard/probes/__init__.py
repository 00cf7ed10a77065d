"""Probes: what a sequential recommender represents inside (RecSAE, PROTOCOLS §5).

- :class:`SAEProbe` — TopK sparse autoencoder on a victim's activations, fidelity report,
  validated concept dictionary, ``explain``, ``ablate``/``steer``, and the latents that
  fire on injected fake users or target items (:meth:`SAEProbe.poisoning_latents`).
- :func:`attribute` — captum integrated gradients: each history item's contribution to one
  recommendation.
- :func:`influence` — training-data influence (TracIn over the scoring head, across the
  checkpoints ``fit(keep_checkpoints=K)`` kept): which training users pushed an item up.
- Building blocks: :class:`TopKSAE`, :class:`SAEConfig`, :func:`train_sae`, :func:`load_sae`,
  :class:`Site` (scoped capture, streaming and splicing at a named layer).
"""

from ._sites import REPRESENTATION, ActivationStream, Site
from .attribution import attribute
from .concepts import ConceptCatalogue, build_catalogue
from .describe import describe_latents
from .influence import Influence, influence
from .probe import SAEProbe
from .sae import SAEConfig, TopKSAE, load_sae, train_sae

__all__ = ["SAEProbe", "attribute", "TopKSAE", "SAEConfig", "train_sae", "load_sae", "Site", "ActivationStream",
           "REPRESENTATION", "ConceptCatalogue", "build_catalogue", "describe_latents", "influence", "Influence"]
