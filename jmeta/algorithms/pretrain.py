"""The pretrained baseline of Finn et al. (2017): joint training, no inner loop."""

from __future__ import annotations

import functools

import jax

from jmeta.gradient_learner import model_classes, query_metrics
from jmeta.inner_loop import LossFn, adapt, inner_optimizer
from jmeta.learner import (
  MetaGradient,
  MetaLearner,
  MetricsFn,
  adapt_then_apply,
  identity,
  over_tasks,
)
from jmeta.models.base import Model, Params, check_model_accepts
from jmeta.tasks.batch import Task
from jmeta.validation import check_steps


def pretrain(
  model: Model,
  loss_fn: LossFn,
  *,
  test_steps: int = 0,
  test_learning_rate: float | None = None,
  batching: str = 'auto',
  chunk_size: int | None = None,
  metrics_fn: MetricsFn | None = None,
) -> MetaLearner:
  """Joint training on every task's query set: grad = mean_i grad L_i^query(theta).

  At test, ``predict`` fine-tunes with ``test_steps`` of SGD at
  ``test_learning_rate`` (none by default), as Finn et al. fine-tune the baseline.
  """
  test = check_steps(test_steps, 'test_steps')
  if test:
    inner_optimizer(None, test_learning_rate)  # refuses a missing or bad rate now

  def task_gradient(params: Params, task: Task, step=None) -> MetaGradient:
    del step

    def objective(params):
      support = loss_fn(model.apply(params, task.support_inputs), task.support_targets)
      return query_metrics(model, loss_fn, metrics_fn, params, task, support)

    grads, metrics = jax.grad(objective, has_aux=True)(params)
    return MetaGradient(grads, metrics)

  def check(params, batch):
    check_model_accepts(model, params, batch.support_inputs[0], 'support inputs')

  batched = over_tasks(
    task_gradient, batching=batching, chunk_size=chunk_size, check=check
  )

  def meta_gradient(params, batch, step=None) -> MetaGradient:
    del step
    return batched(params, batch)

  def no_fine_tuning(params, support_inputs, support_targets):
    return params

  fine_tune = functools.partial(
    adapt, model, loss_fn, steps=test, learning_rate=test_learning_rate
  )
  predict = adapt_then_apply(model, fine_tune if test else no_fine_tuning)

  return MetaLearner(
    'pretrain',
    identity,
    meta_gradient,
    predict,
    task_gradient,
    identity,
    lambda params, batch: model_classes(model, params, batch),
  )


# The names under which jmeta.make_learner finds these factories.
LEARNERS = {'pretrain': pretrain}
