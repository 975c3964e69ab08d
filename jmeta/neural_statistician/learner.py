"""The neural statistician as a ``jmeta.MetaLearner`` on N-way episodes.

Each class of an episode is one dataset: its support and query images, grouped by
label, are a set, and the meta-gradient is the mean over episodes of the gradient
of the reweighted bound on those sets (``NeuralStatistician.loss``); with batch
norm, the running averages are carried (``jmeta.Carry``), averaged over the
episodes of a batch, each episode's sets its own batch. ``predict``
answers an episode's queries like every other learner: ``(queries, n_way)`` logits
-KL(q(c | {x}) || q(c | support of class k)).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jmeta.batching import check_batching, mean_over_tasks
from jmeta.learner import Carry, ClassLabels, MetaGradient, MetaLearner, identity
from jmeta.metric.base import check_episode_labels
from jmeta.neural_statistician.model import BATCH_STATS, NeuralStatistician
from jmeta.tasks.batch import Task, TaskBatch, check_task_batch_shapes
from jmeta.validation import check_n_way


def class_sets(task: Task, n_way: int) -> jax.Array:
  """``(n_way, shots, *image)``: each class's support then query images, the
  episode's images grouped by label (every class must have the same number of
  support and of query images, as in ``jmeta.data`` episodes)."""
  sets = []
  for images, labels in (
    (task.support_inputs, task.support_targets),
    (task.query_inputs, task.query_targets),
  ):
    order = jnp.argsort(labels, stable=True)
    shots = images.shape[0] // n_way
    sets.append(images[order].reshape(n_way, shots, *images.shape[1:]))
  return jnp.concatenate(sets, axis=1)


def split_batch_stats(params) -> tuple[dict, dict]:
  """``(trained, carried)``: the batch norms' running averages are carried."""
  trained = {k: v for k, v in params.items() if k != BATCH_STATS}
  return trained, params.get(BATCH_STATS, {})


def statistician_learner(
  model: NeuralStatistician,
  *,
  n_way: int,
  key: jax.Array,
  alpha: float | Callable[[jax.Array], jax.Array] = 0.0,
  batching: str = 'auto',
  chunk_size: int | None = None,
) -> MetaLearner:
  """``model`` trained on the class sets of ``n_way``-way episodes.

  ``alpha``: the bound's reweighting, a number or a function of the step (e.g. the
  reference code's 1 halved every epoch); 0 is the plain lower bound. Step ``t``
  draws its c and z from ``fold_in(key, t)``, task i from its i-th split.
  """
  check_n_way(n_way)
  check_batching(batching, chunk_size)
  weight = alpha if callable(alpha) else (lambda step: alpha)

  def task_gradient(params, task: Task, step=None, *, key=key) -> MetaGradient:
    a = weight(0 if step is None else step)
    sets = class_sets(Task(*task), n_way)
    grads, (metrics, stats) = jax.grad(model.loss, has_aux=True)(params, sets, key, a)
    # The carried part of the "gradient" is the running averages' next value.
    return MetaGradient(model.with_batch_stats(grads, stats), metrics)

  def meta_gradient(params, batch: TaskBatch, step=None) -> MetaGradient:
    check_task_batch_shapes(batch)
    check_episode_labels(batch.support_targets, n_way)
    step_key = key if step is None else jax.random.fold_in(key, step)
    keys = jax.random.split(step_key, batch.num_tasks)
    return mean_over_tasks(
      lambda t: task_gradient(params, Task(*t[0]), step, key=t[1]),
      (tuple(batch), keys),
      strategy=batching,
      chunk_size=chunk_size,
    )

  def predict(params, support_inputs, support_labels, query_inputs) -> jax.Array:
    check_episode_labels(support_labels, n_way)
    return model.classify(params, support_inputs, support_labels, query_inputs, n_way)

  # Every class of an episode is a set, so every class labels support images.
  labels = ClassLabels(n_way, every_class_in_support=True)
  return MetaLearner(
    name='neural_statistician',
    init=identity,
    meta_gradient=meta_gradient,
    predict=predict,
    task_gradient=task_gradient,
    init_gradient=identity,
    class_labels=lambda params, batch: labels,
    carry=Carry(split_batch_stats, model.with_batch_stats),
  )
