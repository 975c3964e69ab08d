"""Siamese networks (Koch, Zemel & Salakhutdinov, 2015)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from jmeta.losses import accuracy
from jmeta.metric.base import MetricLearner, embed_episode
from jmeta.metric.losses import (
  balanced_contrastive_loss,
  balanced_pair_mean,
  batch_hard_triplet_loss,
  batch_semi_hard_triplet_loss,
  pairwise_distances,
)
from jmeta.models.base import SUPPORT, Model
from jmeta.tasks.batch import Task
from jmeta.validation import check_choice

SIAMESE_LOSSES = ('bce', 'contrastive', 'triplet_batch_hard', 'triplet_semi_hard')


def pair_scores(head: dict, a: jax.Array, b: jax.Array) -> jax.Array:
  """Koch et al.'s pair logit s[i, j] = sum_k w_k |a_ik - b_jk| + b for embeddings
  ``a`` (m, D) and ``b`` (n, D); sigmoid(s) is the probability of the same class."""
  return jnp.abs(a[:, None, :] - b[None, :, :]) @ head['w'] + head['b']


def nearest_support_logits(
  scores: jax.Array, support_labels: jax.Array, n_way: int
) -> jax.Array:
  """Per class, the best score over its support examples: (queries, n_way).

  ``scores`` is (queries, support); a class with no support example scores -inf.
  Masking, not reshaping, so any number of shots per class works.
  """
  member = jax.nn.one_hot(support_labels, n_way, dtype=bool)
  return jnp.max(jnp.where(member[None], scores[:, :, None], -jnp.inf), axis=1)


def siamese(
  model: Model, *, loss: str = 'bce', margin: float = 1.0, batch_norm: str = SUPPORT
) -> MetricLearner:
  """Siamese networks: one embedding f shared by both inputs of a pair (a twin
  network), scored pair by pair; a query takes the class of its best support.

  With ``loss='bce'`` (Koch et al., 2015) a learned head scores a pair by
  s(x, x') = sum_k w_k |f(x)_k - f(x')_k| + b, trained with class-balanced binary
  cross-entropy on all (query, support) pairs of the episode (an N-way episode has
  only 1/N same-class pairs), and logits_c(x) = max over class-c supports of s.
  The other losses train f alone, on Euclidean distances d: ``'contrastive'``, the
  balanced contrastive loss with ``margin`` on the same pairs (Hadsell et al.,
  2006); ``'triplet_batch_hard'`` and ``'triplet_semi_hard'``, the triplet losses of
  ``jmeta.metric.losses`` over all support and query embeddings. Their logits are
  logits_c(x) = -min over class-c supports of d (one-shot nearest neighbour).

  ``params`` is ``{'embedding': model params}``, plus ``'head': {'w', 'b'}`` for
  ``'bce'`` only, so no loss carries parameters it never trains. The head starts
  at w = -1/D, b = 0: a negative mean L1 distance, so the untrained learner is
  already a nearest-neighbour classifier.
  """
  check_choice(loss, SIAMESE_LOSSES, 'loss')
  embed_params = embed_episode(model, batch_norm)

  def embed(params, support_inputs, query_inputs):
    return embed_params(params['embedding'], support_inputs, query_inputs)

  def flat_embeddings(params, support_inputs, query_inputs):
    support, query = embed(params, support_inputs, query_inputs)
    return support.reshape(support.shape[0], -1), query.reshape(query.shape[0], -1)

  def scores(params, support, query):
    """(queries, support) pair scores: higher means more alike."""
    if loss == 'bce':
      return pair_scores(params['head'], query, support)
    return -pairwise_distances(query, other=support)

  def logits(params, support_inputs, support_labels, query_inputs, n_way: int):
    support, query = flat_embeddings(params, support_inputs, query_inputs)
    return nearest_support_logits(scores(params, support, query), support_labels, n_way)

  def episode_loss(params, task: Task, n_way: int):
    support, query = flat_embeddings(params, task.support_inputs, task.query_inputs)
    s = scores(params, support, query)
    same = task.query_targets[:, None] == task.support_targets[None, :]
    if loss == 'bce':
      value = balanced_pair_mean(
        optax.sigmoid_binary_cross_entropy(s, same.astype(s.dtype)), same
      )
    elif loss == 'contrastive':
      d2 = pairwise_distances(query, True, other=support)
      value = balanced_contrastive_loss(d2, same, margin=margin)
    else:
      triplet = (
        batch_hard_triplet_loss
        if loss == 'triplet_batch_hard'
        else batch_semi_hard_triplet_loss
      )
      value = triplet(
        jnp.concatenate([support, query]),
        jnp.concatenate([task.support_targets, task.query_targets]),
        margin=margin,
      )
    class_logits = nearest_support_logits(s, task.support_targets, n_way)
    return value, {
      'loss': value,
      'accuracy': accuracy(class_logits, task.query_targets),
    }

  def init(key: jax.Array, example_inputs: jax.Array):
    params = {'embedding': model.init(key, example_inputs)}
    if loss == 'bce':
      out = jax.eval_shape(
        lambda p, x: model.apply(p, x), params['embedding'], example_inputs
      )
      dim = math.prod(out.shape[1:])
      if dim == 0:
        raise ValueError(
          f'the embedding of inputs of shape {tuple(example_inputs.shape)} is '
          f'empty (shape {out.shape}); use larger inputs.'
        )
      params['head'] = {
        'w': jnp.full((dim,), -1.0 / dim, out.dtype),
        'b': jnp.zeros((), out.dtype),
      }
    return params

  return MetricLearner('siamese', init, embed, logits, episode_loss)
