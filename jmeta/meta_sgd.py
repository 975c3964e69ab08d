"""Meta-SGD: per-parameter inner learning rates, meta-learned beside the init.

The meta-parameters are ``MetaSGDParams(init, learning_rates)``, two pytrees shaped
like the model's params. Task i adapts by

  phi_0 = theta,  phi_{j+1} = phi_j - alpha ⊙ grad L_i^support(phi_j),

and the meta-gradient is the exact (second-order) gradient of the query loss
L_i^query(phi_i) with respect to both theta and alpha (Li, Zhou, Chen & Li, 2017,
"Meta-SGD: Learning to Learn Quickly for Few-Shot Learning"). Since the
meta-parameters are an ordinary pytree, ``jmeta.make_meta_trainer(estimator,
optax.adam(1e-3))`` trains both.
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jmeta.batching import check_batching, mean_over_tasks
from jmeta.estimators import (
  MetaGradient,
  MetaGradientEstimator,
  MetricsFn,
  _loss,
  _query_metrics,
)
from jmeta.inner_loop import LossFn, _check_support, check_steps, scan_inner_loop
from jmeta.models.base import Model, Params, check_model_accepts
from jmeta.tasks.batch import Task, TaskBatch, check_task_batch_shapes


class MetaSGDParams(NamedTuple):
  """Meta-SGD's meta-parameters: the initialisation and its per-parameter step sizes."""

  init: Params
  learning_rates: Params


def meta_sgd_params(params: Params, learning_rate: float) -> MetaSGDParams:
  """Initial meta-parameters: ``params`` with every learning rate set to ``learning_rate``.

  Each learning-rate leaf has its parameter's shape and dtype. Li et al. (2017) draw
  them at random; a constant makes the first meta-step equal to MAML's.
  """
  if isinstance(learning_rate, bool) or not isinstance(learning_rate, numbers.Real):
    raise ValueError(
      f'learning_rate must be a positive float, got {learning_rate!r} of type '
      f'{type(learning_rate).__name__}.'
    )
  if not (math.isfinite(learning_rate) and learning_rate > 0):
    raise ValueError(f'learning_rate must be positive and finite, got {learning_rate}.')
  leaves = jax.tree.leaves(params)
  if not leaves:
    raise ValueError('params has no leaves: there is nothing to adapt.')
  return MetaSGDParams(
    params, jax.tree.map(lambda p: jnp.full_like(p, learning_rate), params)
  )


def _check_meta_params(meta_params: MetaSGDParams) -> None:
  if not isinstance(meta_params, MetaSGDParams):
    raise ValueError(
      f'Meta-SGD takes MetaSGDParams(init, learning_rates), got '
      f'{type(meta_params).__name__}; build it with '
      'jmeta.meta_sgd_params(params, learning_rate).'
    )
  structure = jax.tree.structure(meta_params.init)
  if jax.tree.structure(meta_params.learning_rates) != structure:
    raise ValueError(
      'MetaSGDParams.learning_rates must have the structure of init: got '
      f'{jax.tree.structure(meta_params.learning_rates)} and {structure}.'
    )
  for p, lr in zip(
    jax.tree.leaves(meta_params.init), jax.tree.leaves(meta_params.learning_rates)
  ):
    if jnp.shape(p) != jnp.shape(lr):
      raise ValueError(
        'every learning rate has the shape of its parameter; got a parameter of '
        f'shape {jnp.shape(p)} with learning rates of shape {jnp.shape(lr)}.'
      )


def scale_by_learning_rates(learning_rates: Params) -> optax.GradientTransformation:
  """The stateless inner update u = -alpha ⊙ g, alpha a pytree shaped like params.

  Differentiable with respect to ``learning_rates`` (which it closes over).
  """

  def init(params):
    del params
    return optax.EmptyState()

  def update(updates, state, params=None):
    del params
    return jax.tree.map(lambda a, g: -a * g, learning_rates, updates), state

  return optax.GradientTransformation(init, update)


def _adapt(loss, meta_params: MetaSGDParams, steps: int, remat: bool):
  return scan_inner_loop(
    loss,
    meta_params.init,
    steps=steps,
    optimizer=scale_by_learning_rates(meta_params.learning_rates),
    remat=remat,
  )


def meta_sgd(
  model: Model,
  loss_fn: LossFn,
  *,
  inner_steps: int = 1,
  batching: str = 'auto',
  chunk_size: int | None = None,
  metrics_fn: MetricsFn | None = None,
  remat: bool = False,
) -> MetaGradientEstimator:
  """Meta-SGD: grad = mean_i d L_i^query(phi_i) / d(theta, alpha), exact second order.

  phi_i is ``inner_steps`` updates phi <- phi - alpha ⊙ grad L_i^support(phi) from
  theta (Li et al., 2017 use one). ``meta_gradient`` takes and returns
  ``MetaSGDParams``; build the initial ones with ``meta_sgd_params``. ``remat``
  recomputes each inner step in the backward pass (see ``scan_inner_loop``).

  Example::

    est = jmeta.meta_sgd(model, jmeta.losses.cross_entropy)
    trainer = jmeta.make_meta_trainer(est, optax.adam(1e-3))
    state = trainer.init(jmeta.meta_sgd_params(params, 0.01))
  """
  steps = check_steps(inner_steps, 'inner_steps')
  check_batching(batching, chunk_size)

  def objective(meta_params: MetaSGDParams, task: Task):
    support = _loss(model, loss_fn, task.support_inputs, task.support_targets)
    adapted, support_losses, _ = _adapt(support, meta_params, steps, remat)
    pre = support_losses[0] if steps else support(meta_params.init)
    return _query_metrics(model, loss_fn, metrics_fn, adapted, task, pre)

  def task_gradient(meta_params: MetaSGDParams, task: Task) -> MetaGradient:
    _check_meta_params(meta_params)
    grads, metrics = jax.grad(objective, has_aux=True)(meta_params, task)
    return MetaGradient(grads, metrics)

  def meta_gradient(meta_params: MetaSGDParams, batch: TaskBatch) -> MetaGradient:
    # As in jmeta.estimators, the checks run at trace time only.
    _check_meta_params(meta_params)
    check_task_batch_shapes(batch)
    check_model_accepts(
      model, meta_params.init, batch.support_inputs[0], 'support inputs'
    )
    return mean_over_tasks(
      lambda task: task_gradient(meta_params, Task(*task)),
      batch,
      strategy=batching,
      chunk_size=chunk_size,
    )

  return MetaGradientEstimator('meta_sgd', task_gradient, meta_gradient)


def meta_sgd_adapt(
  model: Model,
  loss_fn: LossFn,
  meta_params: MetaSGDParams,
  inputs: jax.Array,
  targets: jax.Array,
  *,
  steps: int,
) -> Params:
  """Adapts ``meta_params.init`` to one support set with the learned step sizes.

  ``steps`` updates phi <- phi - alpha ⊙ grad L(phi), L(phi) =
  loss_fn(model.apply(phi, inputs), targets); differentiable in ``meta_params``.
  The evaluation counterpart of ``jmeta.adapt``.
  """
  steps = check_steps(steps)
  _check_meta_params(meta_params)
  _check_support(model, meta_params.init, inputs, targets)
  adapted, _, _ = _adapt(
    _loss(model, loss_fn, inputs, targets), meta_params, steps, False
  )
  return adapted
