"""The metric-learner interface, its estimator and its evaluation.

A ``MetricLearner`` scores query examples against a task's labelled support set
through an embedding model; meta-training is plain gradient descent on its episode
loss, so ``metric_estimator`` makes it a ``jmeta.MetaLearner`` for
``jmeta.make_meta_trainer``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import jax
import jax.numpy as jnp

from jmeta.batching import BatchingOptions
from jmeta.learner import (
  ClassLabels,
  MetaGradient,
  MetaLearner,
  identity,
  over_tasks,
  per_task,
)
from jmeta.losses import accuracy
from jmeta.models.base import SUPPORT, Model, Params, PRNGKey, check_batch_norm_mode
from jmeta.options import lists_options
from jmeta.tasks.batch import Task, TaskBatch, check_task_batch_shapes
from jmeta.validation import check_n_way

if TYPE_CHECKING:
  from typing_extensions import Unpack

# ``(embeddings (examples, features), labels (examples,)) -> scalar``
EmbeddingLossFn = Callable[[jax.Array, jax.Array], jax.Array]


class MetricLearner(NamedTuple):
  """A metric-based learner as pure functions of one task (``vmap``-able).

  Attributes:
    name: e.g. 'protonet'.
    init: ``init(key, example_inputs) -> params``; ``example_inputs`` has a leading
      batch axis.
    embed: ``embed(params, support_inputs, query_inputs) -> (support_embeddings,
      query_embeddings)``, each with a leading example axis, under the learner's
      batch-norm mode; None for a learner whose representations need the support
      labels (Meta Networks).
    logits: ``logits(params, support_inputs, support_labels, query_inputs, n_way)
      -> (queries, n_way)`` scores; the arg-max is the prediction. ``n_way`` is a
      static int and labels lie in ``[0, n_way)``.
    loss: ``loss(params, task, n_way) -> (scalar, metrics)``, the episode loss on
      the query set; ``metrics`` holds at least ``loss`` and ``accuracy``.
  """

  name: str
  init: Callable[[PRNGKey, jax.Array], Params]
  embed: Callable[[Params, jax.Array, jax.Array], tuple[jax.Array, jax.Array]] | None
  logits: Callable[..., jax.Array]
  loss: Callable[..., tuple[jax.Array, dict[str, jax.Array]]]


def embed_episode(
  model: Model, batch_norm: str
) -> Callable[[Params, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]:
  """Embeds support and query sets in one ``model.apply`` call.

  With ``batch_norm='support'`` the batch-norm statistics come from the support
  examples only, so no query affects any embedding but its own. With
  ``'transductive'`` the statistics cover support and query together: the query set
  leaks into the support embeddings (as in the reference ProtoNet training code).
  """
  check_batch_norm_mode(batch_norm)

  def embed(params, support_inputs, query_inputs):
    n = support_inputs.shape[0]
    inputs = jnp.concatenate([support_inputs, query_inputs])
    extra = {'num_support': n} if batch_norm == SUPPORT else {}
    out = model.apply(params, inputs, batch_norm=batch_norm, **extra)
    return out[:n], out[n:]

  return embed


def class_means(embeddings: jax.Array, labels: jax.Array, n_way: int) -> jax.Array:
  """Per-class mean of ``embeddings`` (examples, ...): shape ``(n_way, ...)``.

  c_k = sum_i [y_i = k] e_i / sum_i [y_i = k] (the prototypes of Snell et al., 2017).
  Labels outside ``[0, n_way)`` count for no class.
  """
  # A segment sum, not a one-hot matmul: on jaxlib 0.10.2, XLA:CPU's YNNPACK fusion
  # of that matmul's gradient after a max-pool crashes the process at ProtoNet's
  # 60-way 5-shot episode (tests/xla_bugs/ynn_segfault.py).
  flat = embeddings.reshape(embeddings.shape[0], -1)
  sums = jax.ops.segment_sum(flat, labels, num_segments=n_way)
  ones = jnp.ones(labels.shape, embeddings.dtype)
  counts = jnp.maximum(jax.ops.segment_sum(ones, labels, num_segments=n_way), 1.0)
  return (sums / counts[:, None]).reshape((n_way,) + embeddings.shape[1:])


def squared_distances(a: jax.Array, b: jax.Array) -> jax.Array:
  """``d[i, j] = ||a_i - b_j||^2`` for ``a`` (m, D) and ``b`` (n, D)."""
  return jnp.sum(jnp.square(a[:, None, :] - b[None, :, :]), axis=-1)


def cosine_similarities(a: jax.Array, b: jax.Array, eps: float = 1e-8) -> jax.Array:
  """``s[i, j] = a_i . b_j / (||a_i|| ||b_j||)`` for ``a`` (m, D) and ``b`` (n, D)."""
  a = a * jax.lax.rsqrt(jnp.sum(jnp.square(a), axis=-1, keepdims=True) + eps)
  b = b * jax.lax.rsqrt(jnp.sum(jnp.square(b), axis=-1, keepdims=True) + eps)
  return a @ b.T


def classification_loss(
  logits_fn: Callable[..., jax.Array],
  loss_fn: Callable[[jax.Array, jax.Array], jax.Array],
) -> Callable[..., tuple[jax.Array, dict[str, jax.Array]]]:
  """``loss(params, task, n_way)`` = ``loss_fn(logits on the queries, query labels)``."""

  def loss(params, task: Task, n_way: int):
    logits = logits_fn(
      params, task.support_inputs, task.support_targets, task.query_inputs, n_way
    )
    value = loss_fn(logits, task.query_targets)
    return value, {'loss': value, 'accuracy': accuracy(logits, task.query_targets)}

  return loss


def with_embedding_loss(
  learner: MetricLearner, embedding_loss: EmbeddingLossFn, weight: float
) -> MetricLearner:
  """Adds ``weight * embedding_loss(embeddings, labels)`` to the learner's loss.

  The embedding loss (e.g. ``jmeta.metric.center_loss`` or a triplet loss) sees the
  flattened support and query embeddings of the episode with their labels; the
  metrics gain ``embedding_loss``.
  """
  if learner.embed is None:
    raise ValueError(
      f'{learner.name} has no label-free embedding (its embed is None), so an '
      'embedding loss cannot be added to it; set the embedding loss to none.'
    )

  def loss(params, task: Task, n_way: int):
    value, metrics = learner.loss(params, task, n_way)
    support, query = learner.embed(params, task.support_inputs, task.query_inputs)
    embeddings = jnp.concatenate(
      [support.reshape(support.shape[0], -1), query.reshape(query.shape[0], -1)]
    )
    labels = jnp.concatenate([task.support_targets, task.query_targets])
    extra = embedding_loss(embeddings, labels)
    total = value + weight * extra
    return total, {**metrics, 'loss': total, 'embedding_loss': extra}

  return learner._replace(loss=loss)


def check_episode_labels(support_targets: jax.Array, n_way: int) -> None:
  """Refuses, at trace time, support labels that cannot form ``n_way``-way episodes.

  ``support_targets`` has shape ``(examples,)`` (one task) or ``(tasks, examples)``.
  The labels must be integers, and an n-way episode has each of its n classes in
  its support set, so fewer than ``n_way`` support examples mean a wrong ``n_way``.
  Label values are checked on device by the outer loop (``class_labels``).
  """
  shape, dtype = jnp.shape(support_targets), jnp.result_type(support_targets)
  if not jnp.issubdtype(dtype, jnp.integer):
    raise ValueError(
      f'support labels have dtype {dtype}; a metric learner needs integer class '
      f'labels in [0, n_way={n_way}).'
    )
  if len(shape) not in (1, 2):
    raise ValueError(
      f'support labels have shape {shape}; a metric learner needs one integer label '
      'per example, (examples,) per task.'
    )
  if shape[-1] < n_way:
    raise ValueError(
      f'n_way={n_way} but each episode has {shape[-1]} support examples, so at most '
      f'{shape[-1]} of its classes have one: an {n_way}-way episode has every class '
      "in its support set. Pass the episodes' n_way (the sampler's) to the metric "
      'learner.'
    )


def metric_estimator(
  learner: MetricLearner,
  *,
  n_way: int,
  batching: str = 'auto',
  chunk_size: int | None = None,
) -> MetaLearner:
  """The metric learner as a ``jmeta.MetaLearner`` for ``n_way``-way episodes.

  The meta-gradient is mean_i grad L_i(theta) over the episodes, with no inner
  loop: the support set enters through the learner's loss. ``init`` is the
  identity on the learner's params (``learner.init(key, example_inputs)``);
  ``predict`` gives the ``(queries, n_way)`` logits of one episode.

  A wrong ``n_way`` is refused: at trace time when an episode has fewer support
  examples than ``n_way`` (``check_episode_labels``), and in
  ``jmeta.make_meta_trainer`` on device when a label lies outside ``[0, n_way)`` or
  a class in that range labels no support example of some episode
  (``class_labels``, reported by ``jmeta.raise_if_nonfinite``).
  """
  check_n_way(n_way)

  def task_gradient(params: Params, task: Task, step=None) -> MetaGradient:
    del step  # no schedule
    grads, metrics = jax.grad(learner.loss, has_aux=True)(params, task, n_way)
    return MetaGradient(grads, metrics)

  def check(params, batch: TaskBatch) -> None:
    del params
    check_episode_labels(batch.support_targets, n_way)

  batched = over_tasks(
    task_gradient, batching=batching, chunk_size=chunk_size, check=check
  )

  def meta_gradient(params: Params, batch: TaskBatch, step=None) -> MetaGradient:
    del step
    return batched(params, batch)

  def predict(params, support_inputs, support_labels, query_inputs):
    check_episode_labels(support_labels, n_way)
    return learner.logits(params, support_inputs, support_labels, query_inputs, n_way)

  def class_labels(params, batch):
    del params, batch
    return ClassLabels(n_way, every_class_in_support=True)

  return MetaLearner(
    learner.name,
    identity,
    meta_gradient,
    predict,
    task_gradient,
    identity,
    class_labels,
  )


@lists_options(BatchingOptions, per_task)
def evaluate_metric(
  learner: MetricLearner,
  params: Params,
  batch: TaskBatch,
  *,
  n_way: int,
  **batching: Unpack[BatchingOptions],
) -> dict[str, jax.Array]:
  """Per-task query ``loss`` and ``accuracy`` (each with a leading task axis)."""
  check_n_way(n_way)
  check_task_batch_shapes(batch)  # before the labels are read
  check_episode_labels(batch.support_targets, n_way)
  return per_task(lambda task: learner.loss(params, task, n_way)[1], batch, **batching)
