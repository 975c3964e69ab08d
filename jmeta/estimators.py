"""Meta-gradient estimators behind one signature.

Each factory returns a ``MetaGradientEstimator`` whose
``meta_gradient(params, batch) -> MetaGradient(grads, metrics)`` takes the
meta-parameters and a ``TaskBatch``, so estimators can be swapped in a training
step or compared on the same batch. With phi_i = U_i^k(theta) the params after k
inner steps on task i's support set and L_i the query loss:

* ``maml``: exact second order, mean_i (dphi_i/dtheta)^T grad L_i(phi_i)
  (Finn et al., 2017).
* ``fomaml``: first order, mean_i grad L_i(phi_i) (Finn et al., 2017, Sec. 5.2).
* ``reptile``: mean_i (theta - phi_i), fed to the outer optimizer as a gradient
  (Nichol et al., 2018).
* ``pretrain``: mean_i grad L_i(theta), joint multi-task training with no inner
  loop: the "pretrained" baseline of Finn et al. (2017).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import optax

from jmeta import inner_loop
from jmeta.batching import check_batching, mean_over_tasks
from jmeta.inner_loop import (
  LossFn,
  check_batch_size,
  check_steps,
  minibatch_objective,
  scan_inner_loop,
)
from jmeta.models.base import Model, Params, check_model_accepts
from jmeta.tasks.batch import Task, TaskBatch, check_task_batch_shapes

MetricsFn = Callable[[jax.Array, jax.Array], dict[str, jax.Array]]


class MetaGradient(NamedTuple):
  """The meta-gradient (a pytree like params) and scalar metrics averaged over tasks.

  ``metrics['loss']`` is the query loss after adaptation, ``metrics['support_loss']``
  the support loss before it.
  """

  grads: Params
  metrics: dict[str, jax.Array]


class MetaGradientEstimator(NamedTuple):
  """A way of computing the meta-gradient.

  Attributes:
    name: the estimator's name ('maml', 'fomaml', 'reptile', 'pretrain').
    task_gradient: ``(params, task) -> MetaGradient`` for one ``Task``.
    meta_gradient: ``(params, batch) -> MetaGradient``, the mean over the tasks of
      a ``TaskBatch``, batched as configured.
    meta_gradient_at: ``(params, batch, iteration) -> MetaGradient`` for estimators
      whose objective follows a schedule over training iterations (MAML++'s
      annealing), ``iteration`` a scalar int array; ``make_meta_trainer`` passes
      its step count. None (the default) for estimators without a schedule.
  """

  name: str
  task_gradient: Callable[[Params, Task], MetaGradient]
  meta_gradient: Callable[[Params, TaskBatch], MetaGradient]
  meta_gradient_at: Callable[[Params, TaskBatch, jax.Array], MetaGradient] | None = None


def _estimator(
  name: str, model: Model, task_gradient, batching: str, chunk_size: int | None
) -> MetaGradientEstimator:
  check_batching(batching, chunk_size)

  def meta_gradient(params: Params, batch: TaskBatch) -> MetaGradient:
    # Shape checks run at trace time only: the compiled step carries none of them.
    check_task_batch_shapes(batch)
    check_model_accepts(model, params, batch.support_inputs[0], 'support inputs')
    return mean_over_tasks(
      lambda task: task_gradient(params, Task(*task)),
      batch,
      strategy=batching,
      chunk_size=chunk_size,
    )

  return MetaGradientEstimator(name, task_gradient, meta_gradient)


def _loss(model: Model, loss_fn: LossFn, inputs, targets):
  return lambda p: loss_fn(model.apply(p, inputs), targets)


def _query_metrics(model, loss_fn, metrics_fn, params, task, support_loss):
  outputs = model.apply(params, task.query_inputs)
  loss = loss_fn(outputs, task.query_targets)
  metrics = {'loss': loss, 'support_loss': support_loss}
  if metrics_fn is not None:
    metrics.update(metrics_fn(outputs, task.query_targets))
  return loss, metrics


def _through_adaptation(
  name,
  first_order,
  model,
  loss_fn,
  inner_steps,
  inner_learning_rate,
  inner_optimizer,
  batching,
  chunk_size,
  metrics_fn,
  remat,
) -> MetaGradientEstimator:
  steps = check_steps(inner_steps, 'inner_steps')
  opt = inner_loop.inner_optimizer(inner_optimizer, inner_learning_rate)

  def objective(params: Params, task: Task):
    support = _loss(model, loss_fn, task.support_inputs, task.support_targets)
    adapted, support_losses, _ = scan_inner_loop(
      support,
      params,
      steps=steps,
      optimizer=opt,
      first_order=first_order,
      remat=remat,
    )
    pre = support_losses[0] if steps else support(params)
    return _query_metrics(model, loss_fn, metrics_fn, adapted, task, pre)

  def task_gradient(params: Params, task: Task) -> MetaGradient:
    grads, metrics = jax.grad(objective, has_aux=True)(params, task)
    return MetaGradient(grads, metrics)

  return _estimator(name, model, task_gradient, batching, chunk_size)


def maml(
  model: Model,
  loss_fn: LossFn,
  *,
  inner_steps: int,
  inner_learning_rate: float | None = None,
  inner_optimizer: optax.GradientTransformation | None = None,
  batching: str = 'auto',
  chunk_size: int | None = None,
  metrics_fn: MetricsFn | None = None,
  remat: bool = False,
) -> MetaGradientEstimator:
  """Exact second-order MAML: differentiates through every inner step.

  grad = mean_i (dphi_i/dtheta)^T grad L_i^query(phi_i), phi_i after
  ``inner_steps`` updates of ``inner_optimizer`` (default SGD at
  ``inner_learning_rate``) on task i's support set (Finn et al., 2017).
  ``remat=True`` recomputes each inner step in the backward pass instead of storing
  its intermediates (``jax.checkpoint``), bounding memory for long inner loops;
  ``batching='chunked'`` bounds it over tasks.
  """
  return _through_adaptation(
    'maml',
    False,
    model,
    loss_fn,
    inner_steps,
    inner_learning_rate,
    inner_optimizer,
    batching,
    chunk_size,
    metrics_fn,
    remat,
  )


def fomaml(
  model: Model,
  loss_fn: LossFn,
  *,
  inner_steps: int,
  inner_learning_rate: float | None = None,
  inner_optimizer: optax.GradientTransformation | None = None,
  batching: str = 'auto',
  chunk_size: int | None = None,
  metrics_fn: MetricsFn | None = None,
  remat: bool = False,
) -> MetaGradientEstimator:
  """First-order MAML: grad = mean_i grad L_i^query(phi_i), dphi_i/dtheta taken as I."""
  return _through_adaptation(
    'fomaml',
    True,
    model,
    loss_fn,
    inner_steps,
    inner_learning_rate,
    inner_optimizer,
    batching,
    chunk_size,
    metrics_fn,
    remat,
  )


def reptile(
  model: Model,
  loss_fn: LossFn,
  *,
  inner_steps: int,
  inner_learning_rate: float | None = None,
  inner_optimizer: optax.GradientTransformation | None = None,
  batching: str = 'auto',
  chunk_size: int | None = None,
  metrics_fn: MetricsFn | None = None,
  inner_batch_size: int | None = None,
) -> MetaGradientEstimator:
  """Reptile: grad = mean_i (theta - phi_i), phi_i adapted on task i's support set.

  With outer ``optax.sgd(epsilon)`` this is Reptile's update
  theta <- theta + epsilon * mean_i (phi_i - theta) (Nichol et al., 2018). The query
  set is used only for the reported metrics. With ``inner_batch_size`` each inner
  step sees one minibatch of the support set, drawn without replacement as in the
  paper's code (``jmeta.inner_loop.minibatch_indices``, keyed by
  ``data_key(support_inputs)``); with it the paper trains on 10 shots per class
  in minibatches of 10 (5-way) or 20 (20-way), one epoch per task.
  """
  steps = check_steps(inner_steps, 'inner_steps')
  opt = inner_loop.inner_optimizer(inner_optimizer, inner_learning_rate)
  if inner_batch_size is not None:
    # Its type now; whether the support set can fill it, when the shapes are known.
    check_batch_size(inner_batch_size, num_examples=inner_batch_size)

  def task_gradient(params: Params, task: Task) -> MetaGradient:
    support = _loss(model, loss_fn, task.support_inputs, task.support_targets)
    objective, xs = minibatch_objective(
      model,
      loss_fn,
      task.support_inputs,
      task.support_targets,
      steps=steps,
      batch_size=inner_batch_size,
    )
    adapted, support_losses, _ = scan_inner_loop(
      objective, params, steps=steps, optimizer=opt, xs=xs
    )
    full_batch = steps and inner_batch_size is None
    pre = support_losses[0] if full_batch else support(params)
    _, metrics = _query_metrics(model, loss_fn, metrics_fn, adapted, task, pre)
    grads = jax.tree.map(lambda t, p: t - p, params, adapted)
    return MetaGradient(grads, jax.lax.stop_gradient(metrics))

  return _estimator('reptile', model, task_gradient, batching, chunk_size)


def pretrain(
  model: Model,
  loss_fn: LossFn,
  *,
  batching: str = 'auto',
  chunk_size: int | None = None,
  metrics_fn: MetricsFn | None = None,
) -> MetaGradientEstimator:
  """Joint training on every task's query set, no inner loop (the MAML baseline)."""

  def objective(params: Params, task: Task):
    support = _loss(model, loss_fn, task.support_inputs, task.support_targets)
    return _query_metrics(model, loss_fn, metrics_fn, params, task, support(params))

  def task_gradient(params: Params, task: Task) -> MetaGradient:
    grads, metrics = jax.grad(objective, has_aux=True)(params, task)
    return MetaGradient(grads, metrics)

  return _estimator('pretrain', model, task_gradient, batching, chunk_size)
