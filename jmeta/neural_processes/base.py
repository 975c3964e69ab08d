"""The neural-process interface and the ``MetaLearner`` that trains one.

A neural process (Garnelo et al., 2018a, b; Kim et al., 2019) maps a task's
context set (the support set) to a Gaussian predictive at its target inputs (the
query inputs) in one forward pass: no inner loop. Meta-training is gradient
descent on the mean over tasks of its loss, so ``neural_process_learner`` makes it
a ``jmeta.MetaLearner`` for ``jmeta.make_meta_trainer``, as
``jmeta.metric.metric_estimator`` does for metric learners.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jmeta.batching import check_batching, mean_over_tasks
from jmeta.learner import MetaGradient, MetaLearner, identity
from jmeta.losses import gaussian_log_likelihood
from jmeta.models.base import Params, PRNGKey
from jmeta.tasks.batch import Task, TaskBatch, check_task_batch_shapes


class Predictive(NamedTuple):
  """A diagonal Gaussian predictive: ``mean`` and ``std``, each ``(targets,
  output_size)`` (with leading task or sample axes where batched)."""

  mean: jax.Array
  std: jax.Array


class NeuralProcess(NamedTuple):
  """A neural process as pure functions of one task (``vmap``-able).

  Attributes:
    name: e.g. 'cnp'.
    init: ``init(key, example_inputs) -> params``; ``example_inputs`` is
      ``(points, input_size)``, read for its width only.
    predict: ``predict(params, context_x, context_y, target_x) -> Predictive``;
      a latent model decodes the mean of q(z | context).
    loss: ``loss(params, task, key) -> (scalar, metrics)``: the negative
      log-likelihood (CNP) or negative ELBO (latent models) per target point, with
      metrics ``loss``, ``log_likelihood`` and, for latent models, ``kl``. The
      support set is the context, the query set the targets. ``key`` draws z
      (None for a CNP).
    log_likelihood: ``log_likelihood(params, task, key, num_samples) -> scalar``:
      log p(y_T | x_T, context) per target point, estimated with ``num_samples``
      draws of z from q(z | context) in latent models (exact for a CNP, which
      ignores ``key`` and ``num_samples``).
    sample_predictive: ``(params, context_x, context_y, target_x, key,
      num_samples) -> Predictive`` with a leading sample axis, one per z drawn from
      q(z | context): coherent function samples (a CNP repeats its one predictive).
    latent: whether the model has a latent path (its loss needs a key).
  """

  name: str
  init: Callable[[PRNGKey, jax.Array], Params]
  predict: Callable[..., Predictive]
  loss: Callable[..., tuple[jax.Array, dict[str, jax.Array]]]
  log_likelihood: Callable[..., jax.Array]
  sample_predictive: Callable[..., Predictive]
  latent: bool


def check_context_arrays(
  input_size: int,
  output_size: int,
  context_x: jax.Array,
  context_y: jax.Array,
  target_x: jax.Array,
  target_y: jax.Array | None = None,
) -> None:
  """Refuses, at trace time, one task's arrays that the model cannot read.

  Each is ``(points, features)``; the context is not empty; inputs have
  ``input_size`` features and outputs ``output_size`` (the widths the params were
  built for).
  """
  arrays = {'context_x': context_x, 'context_y': context_y, 'target_x': target_x}
  if target_y is not None:
    arrays['target_y'] = target_y
  for name, a in arrays.items():
    if jnp.ndim(a) != 2:
      raise ValueError(
        f'{name} has shape {jnp.shape(a)}; a neural process takes one task as '
        '(points, features) arrays. Batch tasks with jmeta.predict_tasks or the '
        "learner's meta_gradient, not by a leading axis here."
      )
  if jnp.shape(context_x)[0] == 0:
    raise ValueError(
      f'the context is empty (context_x has shape {jnp.shape(context_x)}); a '
      'neural process needs at least one context point to condition on.'
    )
  for x_name, y_name in (('context_x', 'context_y'), ('target_x', 'target_y')):
    if (
      y_name in arrays and jnp.shape(arrays[x_name])[0] != jnp.shape(arrays[y_name])[0]
    ):
      raise ValueError(
        f'{x_name} has {jnp.shape(arrays[x_name])[0]} points but {y_name} has '
        f'{jnp.shape(arrays[y_name])[0]}; each input needs its output.'
      )
  for name, a in arrays.items():
    want = input_size if name.endswith('_x') else output_size
    if jnp.shape(a)[1] != want:
      kind = 'inputs' if name.endswith('_x') else 'outputs'
      raise ValueError(
        f'{name} has {jnp.shape(a)[1]} features but the params were built for '
        f'{kind} of width {want}; the input dimensions of context and targets '
        'must match the example_inputs given to init (and the outputs the '
        "model's output_size)."
      )


def predictive_metrics(
  prediction: Predictive, targets: jax.Array
) -> dict[str, jax.Array]:
  """``log_likelihood`` per target point and ``mse`` of the mean, for
  ``jmeta.evaluate``'s ``metrics_fn``."""
  return {
    'log_likelihood': jnp.mean(
      gaussian_log_likelihood(prediction.mean, prediction.std, targets)
    ),
    'mse': jnp.mean(jnp.square(prediction.mean - targets)),
  }


def neural_process_learner(
  process: NeuralProcess,
  *,
  key: jax.Array | None = None,
  batching: str = 'auto',
  chunk_size: int | None = None,
) -> MetaLearner:
  """The neural process as a ``jmeta.MetaLearner``: grad = mean_i grad L_i(theta).

  L_i is ``process.loss`` on task i, its support set the context and its query set
  the targets. ``init`` is the identity on ``process.init(key, example_inputs)``;
  ``predict`` gives one task's ``Predictive`` (``predictive_metrics`` scores it in
  ``jmeta.evaluate``).

  A latent model draws z in its loss, so it needs ``key``: the step's key is
  ``fold_in(key, step)`` (``key`` itself at ``step=None``) and task i of the batch
  gets its i-th split, so every step and task draws afresh and a run is
  reproducible. Under a task mesh each device's block reuses the same splits
  (the same noise for its i-th task).
  """
  if not isinstance(process, NeuralProcess):
    raise ValueError(
      'neural_process_learner takes a jmeta.neural_processes.NeuralProcess (e.g. '
      f'conditional_neural_process(...)), got {type(process).__name__}.'
    )
  if process.latent and key is None:
    raise ValueError(
      f'{process.name} has a latent variable z, drawn in its loss; pass '
      'key=jax.random.key(seed) to neural_process_learner.'
    )
  check_batching(batching, chunk_size)
  base_key = key if process.latent else None

  def step_key(step):
    if base_key is None or step is None:
      return base_key
    return jax.random.fold_in(base_key, step)

  def task_gradient(params, task: Task, step=None, *, key=None) -> MetaGradient:
    key = step_key(step) if key is None else key
    grads, metrics = jax.grad(process.loss, has_aux=True)(params, Task(*task), key)
    return MetaGradient(grads, metrics)

  def meta_gradient(params, batch: TaskBatch, step=None) -> MetaGradient:
    check_task_batch_shapes(batch)
    keys = step_key(step)
    if keys is not None:
      keys = jax.random.split(keys, batch.num_tasks)
    return mean_over_tasks(
      lambda t: task_gradient(params, Task(*t[0]), key=t[1]),
      (tuple(batch), keys),
      strategy=batching,
      chunk_size=chunk_size,
    )

  def predict(params, support_inputs, support_targets, query_inputs) -> Predictive:
    return process.predict(params, support_inputs, support_targets, query_inputs)

  return MetaLearner(
    process.name, identity, meta_gradient, predict, task_gradient, identity
  )
