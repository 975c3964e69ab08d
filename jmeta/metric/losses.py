"""Metric-learning losses on a batch of embeddings, as pure functions.

Each loss of the form ``loss(embeddings (n, D), labels (n,), *, ...) -> scalar``
(``pairwise_contrastive_loss``, ``batch_hard_triplet_loss``,
``batch_semi_hard_triplet_loss``, ``center_loss``) can serve as the extra loss of
any metric learner through ``with_embedding_loss``, e.g.
``with_embedding_loss(learner, functools.partial(batch_hard_triplet_loss,
margin=0.5), 0.1)``. The mining functions return indices, so which triplets a loss
uses can be checked directly; gradients flow only through the mined distances.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jmeta.metric.base import class_means, squared_distances


def safe_sqrt(x: jax.Array) -> jax.Array:
  """sqrt(max(x, 0)) with gradient 0, not inf or NaN, where x <= 0."""
  positive = x > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)


def pairwise_distances(
  embeddings: jax.Array, squared: bool = False, *, other: jax.Array | None = None
) -> jax.Array:
  """``d[i, j] = ||e_i - o_j||`` (or its square) for rows of ``embeddings`` (m, D)
  and ``other`` (n, D), which defaults to ``embeddings``.

  Differences are taken before squaring, not expanded as |a|^2 + |b|^2 - 2 a.b:
  no cancellation, so identical rows (the diagonal) give exactly 0, and ``safe_sqrt``
  gives them a zero gradient instead of NaN. Memory is O(m n D), as in
  ``squared_distances``.
  """
  other = embeddings if other is None else other
  d2 = squared_distances(embeddings, other)
  return d2 if squared else safe_sqrt(d2)


def _masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean of ``values`` where ``mask`` holds; 0 if it holds nowhere."""
  mask = mask.astype(values.dtype)
  return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def balanced_pair_mean(
  values: jax.Array, same: jax.Array, valid: jax.Array | None = None
) -> jax.Array:
  """0.5 * mean over same-class pairs + 0.5 * mean over different-class pairs.

  ``values``, ``same`` (bool) and ``valid`` (bool, default all) share one shape; an
  empty group contributes 0. Balancing matters in episodes: an N-way episode has
  only 1/N same-class pairs, which a plain mean would let the negatives swamp.
  """
  valid = jnp.ones(same.shape, bool) if valid is None else valid
  return 0.5 * _masked_mean(values, same & valid) + 0.5 * _masked_mean(
    values, ~same & valid
  )


def _contrastive_terms(squared: jax.Array, same: jax.Array, margin: float) -> jax.Array:
  # The same-class term uses d^2 directly: exact, and smooth at d = 0.
  hinge = jnp.square(jax.nn.relu(margin - safe_sqrt(squared)))
  return jnp.where(same, squared, hinge)


def contrastive_loss(
  a: jax.Array, b: jax.Array, same: jax.Array, *, margin: float = 1.0
) -> jax.Array:
  """Contrastive loss of Hadsell, Chopra & LeCun (2006) over paired rows.

  mean_i [ s_i d_i^2 + (1 - s_i) max(0, margin - d_i)^2 ] with d_i = ||a_i - b_i||
  for ``a``, ``b`` of shape (n, D) and ``same`` (n,) true (or 1) for same-class
  pairs.
  """
  squared = jnp.sum(jnp.square(a - b), axis=-1)
  return jnp.mean(_contrastive_terms(squared, same.astype(bool), margin))


def balanced_contrastive_loss(
  squared_distances: jax.Array,
  same: jax.Array,
  *,
  margin: float = 1.0,
  valid: jax.Array | None = None,
) -> jax.Array:
  """The contrastive loss (Hadsell et al., 2006) on a matrix of pairs, balanced:

  0.5 mean_{same} d^2 + 0.5 mean_{different} max(0, margin - d)^2 over the
  ``valid`` pairs, from ``squared_distances`` d^2 and a boolean ``same`` mask of
  the same shape (see ``balanced_pair_mean``).
  """
  terms = _contrastive_terms(squared_distances, same, margin)
  return balanced_pair_mean(terms, same, valid)


def _label_masks(labels: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(positive, negative) masks: same label but not itself, and different label."""
  same = labels[:, None] == labels[None, :]
  return same & ~jnp.eye(labels.shape[0], dtype=bool), ~same


def pairwise_contrastive_loss(
  embeddings: jax.Array, labels: jax.Array, *, margin: float = 1.0
) -> jax.Array:
  """``balanced_contrastive_loss`` over all pairs i != j of a labelled batch."""
  positive, negative = _label_masks(labels)
  return balanced_contrastive_loss(
    pairwise_distances(embeddings, squared=True),
    positive,
    margin=margin,
    valid=positive | negative,
  )


def triplet_loss(
  anchor: jax.Array,
  positive: jax.Array,
  negative: jax.Array,
  *,
  margin: float = 1.0,
  squared: bool = True,
) -> jax.Array:
  """Triplet loss of FaceNet (Schroff, Kalenichenko & Philbin, 2015).

  mean_i max(0, d(a_i, p_i) - d(a_i, n_i) + margin) for rows of (n, D) arrays, with
  d the squared (as in FaceNet) or plain Euclidean distance.
  """
  d_ap = jnp.sum(jnp.square(anchor - positive), axis=-1)
  d_an = jnp.sum(jnp.square(anchor - negative), axis=-1)
  if not squared:
    d_ap, d_an = safe_sqrt(d_ap), safe_sqrt(d_an)
  return jnp.mean(jax.nn.relu(d_ap - d_an + margin))


class HardTriplets(NamedTuple):
  """Batch-hard mining: per anchor, its hardest positive and negative.

  Attributes:
    positive_index: (n,) the same-class example (not the anchor) farthest away.
    negative_index: (n,) the other-class example nearest.
    valid: (n,) whether the anchor has at least one positive and one negative;
      the indices of an invalid anchor are meaningless.
  """

  positive_index: jax.Array
  negative_index: jax.Array
  valid: jax.Array


def batch_hard_mining(distances: jax.Array, labels: jax.Array) -> HardTriplets:
  """Hardest positive and negative per anchor (Hermans, Beyer & Leibe, 2017).

  ``distances`` is (n, n); ties go to the lowest index.
  """
  positive, negative = _label_masks(labels)
  distances = jax.lax.stop_gradient(distances)
  positive_index = jnp.argmax(jnp.where(positive, distances, -jnp.inf), axis=1)
  negative_index = jnp.argmin(jnp.where(negative, distances, jnp.inf), axis=1)
  valid = positive.any(axis=1) & negative.any(axis=1)
  return HardTriplets(positive_index, negative_index, valid)


def batch_hard_triplet_loss(
  embeddings: jax.Array,
  labels: jax.Array,
  *,
  margin: float = 1.0,
  squared: bool = False,
) -> jax.Array:
  """Batch-hard triplet loss (Hermans, Beyer & Leibe, 2017).

  mean over valid anchors a of max(0, max_p d(a, p) - min_n d(a, n) + margin), with
  p ranging over the other examples of a's class and n over the other classes;
  anchors with no positive or no negative are left out (0 if none is valid). d is
  the Euclidean distance (the paper's choice) or its square.
  """
  d = pairwise_distances(embeddings, squared)
  mined = batch_hard_mining(d, labels)
  rows = jnp.arange(d.shape[0])
  hinge = jax.nn.relu(
    d[rows, mined.positive_index] - d[rows, mined.negative_index] + margin
  )
  return _masked_mean(hinge, mined.valid)


class SemiHardNegatives(NamedTuple):
  """Semi-hard mining: a negative for every (anchor, positive) pair.

  Attributes:
    negative_index: (n, n) for anchor a and positive p, the negative n nearest a
      with d(a, n) > d(a, p); if there is none, the negative farthest from a.
    semi_hard: (n, n) whether a semi-hard negative was found (else the fall-back).
    valid: (n, n) whether (a, p) is an anchor-positive pair (same class, p != a)
      whose anchor has a negative; other entries are meaningless.
  """

  negative_index: jax.Array
  semi_hard: jax.Array
  valid: jax.Array


def semi_hard_mining(distances: jax.Array, labels: jax.Array) -> SemiHardNegatives:
  """FaceNet's semi-hard negatives, with the fall-back of tf-addons'
  ``triplet_semihard_loss``: the largest negative distance when no negative is
  farther than the positive. Ties go to the lowest index.

  Sorting each anchor's negative distances and binary-searching each positive
  distance needs O(n^2) memory, where tf-addons' masks need O(n^3).
  """
  positive, negative = _label_masks(labels)
  distances = jax.lax.stop_gradient(distances)
  negative_distances = jnp.where(negative, distances, jnp.inf)
  # A stable sort keeps equal distances in index order, so ties match argmin.
  order = jnp.argsort(negative_distances, axis=1, stable=True)
  ranked = jnp.take_along_axis(negative_distances, order, axis=1)
  # side='right': the first negative strictly farther than the positive.
  rank = jax.vmap(lambda r, d: jnp.searchsorted(r, d, side='right'))(ranked, distances)
  rank = jnp.minimum(rank, distances.shape[1] - 1)
  first_farther = jnp.take_along_axis(ranked, rank, axis=1)
  semi_hard = jnp.isfinite(first_farther) & (first_farther > distances)
  farthest = jnp.argmax(jnp.where(negative, distances, -jnp.inf), axis=1)
  negative_index = jnp.where(
    semi_hard, jnp.take_along_axis(order, rank, axis=1), farthest[:, None]
  )
  valid = positive & negative.any(axis=1, keepdims=True)
  return SemiHardNegatives(negative_index, semi_hard, valid)


def batch_semi_hard_triplet_loss(
  embeddings: jax.Array, labels: jax.Array, *, margin: float = 1.0, squared: bool = True
) -> jax.Array:
  """Triplet loss with FaceNet's semi-hard negatives (Schroff et al., 2015), as
  tf-addons' ``triplet_semihard_loss``.

  mean over anchor-positive pairs (a, p) of max(0, d(a, p) - d(a, n*) + margin),
  n* from ``semi_hard_mining``; pairs whose anchor has no negative are left out (0
  if none is left). d is squared Euclidean by default, as in the original
  ``tf.contrib`` loss (tf-addons defaults to the plain distance: ``squared=False``).
  """
  d = pairwise_distances(embeddings, squared)
  mined = semi_hard_mining(d, labels)
  d_an = jnp.take_along_axis(d, mined.negative_index, axis=1)
  return _masked_mean(jax.nn.relu(d - d_an + margin), mined.valid)


def center_loss(
  embeddings: jax.Array, labels: jax.Array, *, num_classes: int | None = None
) -> jax.Array:
  """Center loss (Wen et al., 2016), episodic: 0.5 mean_i ||x_i - c_{y_i}||^2.

  Wen et al. keep running class centers as state; this stateless version takes c_k
  as the mean of the batch's class-k embeddings instead, so it measures the
  within-class spread of the episode. Because the mean minimises the within-class
  sum of squares, the gradient through the centers vanishes: d/dx_i is
  (x_i - c_{y_i}) / n whether or not the centers are held fixed, so there is no
  stop-gradient option. Labels must lie in [0, ``num_classes``); ``num_classes`` is
  static and defaults to the batch size, an upper bound that costs only unused
  empty classes.
  """
  embeddings = embeddings.reshape(embeddings.shape[0], -1)
  num_classes = embeddings.shape[0] if num_classes is None else num_classes
  centers = class_means(embeddings, labels, num_classes)
  return 0.5 * jnp.mean(jnp.sum(jnp.square(embeddings - centers[labels]), axis=-1))
