"""Prototypical networks (Snell et al., 2017)."""

from __future__ import annotations

import jax

from jmeta.losses import cross_entropy
from jmeta.metric.base import (
  MetricLearner,
  class_means,
  classification_loss,
  cosine_similarities,
  embed_episode,
  squared_distances,
)
from jmeta.models.base import SUPPORT, Model
from jmeta.validation import check_choice

DISTANCES = ('squared_euclidean', 'cosine')


def prototypical(
  model: Model,
  *,
  distance: str = 'squared_euclidean',
  cosine_scale: float = 10.0,
  batch_norm: str = SUPPORT,
) -> MetricLearner:
  """Prototypical networks: a query's logits are its negative distances to the class
  means of the support embeddings.

  logits_k(x) = -||f(x) - c_k||^2 with c_k = mean_{i: y_i = k} f(x_i); with
  ``distance='cosine'``, logits_k(x) = ``cosine_scale`` * cos(f(x), c_k). Trained
  with cross-entropy on the queries. ``model`` is the embedding network (e.g.
  ``conv4(0, variant='maxpool')``).
  """
  check_choice(distance, DISTANCES, 'distance')
  embed = embed_episode(model, batch_norm)

  def logits(params, support_inputs, support_labels, query_inputs, n_way: int):
    support, query = embed(params, support_inputs, query_inputs)
    support = support.reshape(support.shape[0], -1)
    query = query.reshape(query.shape[0], -1)
    prototypes = class_means(support, support_labels, n_way)
    if distance == 'cosine':
      return cosine_scale * cosine_similarities(query, prototypes)
    return -squared_distances(query, prototypes)

  def init(key: jax.Array, example_inputs: jax.Array):
    return model.init(key, example_inputs)

  return MetricLearner(
    'protonet', init, embed, logits, classification_loss(logits, cross_entropy)
  )
