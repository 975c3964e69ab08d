"""The one meta-learner interface: ``init``, ``meta_gradient`` and ``predict``.

A ``MetaLearner`` is a NamedTuple of pure functions, in the shape of optax's
``GradientTransformation``. Every algorithm in jmeta (gradient-based, metric-based,
and whatever comes next) is one, so the outer loop, evaluation, the comparison tool
and the experiments never ask which algorithm they hold:

* ``init(model_params) -> meta_params``: what the outer loop trains, and any state
  the learner carries. The identity for MAML; Meta-SGD adds learned rates, MAML++
  per-step rates and weights.
* ``meta_gradient(meta_params, batch, step=None) -> MetaGradient``: the mean over
  the tasks of a ``TaskBatch``; ``step`` is the training iteration, read by
  learners with schedules (MAML++'s annealing; None: the schedule's end).
* ``predict(meta_params, support_inputs, support_targets, query_inputs)``: what the
  learner does at test time on one task, e.g. adapt then apply the model, or score
  the queries against the support set.

A learner may also carry state from one meta-update to the next that the outer
optimizer does not train (Reptile's inner Adam state, as its reference code keeps
it). That state is part of the meta-params, so ``predict`` and checkpoints see it;
``MetaLearner.carry`` splits it from the trained part (``NO_CARRY``: nothing is
carried).

``over_tasks`` is the one place that checks a task batch and batches a per-task
function over it; ``predict_tasks`` and ``evaluate`` run ``predict`` over a batch.

A classifier also says, through ``class_labels``, what its labels must be (integers
in ``[0, num_classes)``, the classes being the model's output width or a metric
learner's ``n_way``); the outer loop checks every batch against it on device.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jmeta.batching import (
  BatchingOptions,
  check_batching,
  map_tasks,
  mean_over_tasks,
)
from jmeta.models.base import Model, Params
from jmeta.options import lists_options
from jmeta.tasks.batch import Task, TaskBatch, check_task_batch_shapes

if TYPE_CHECKING:
  from typing_extensions import Unpack

MetaParams = Any
MetricsFn = Callable[[jax.Array, jax.Array], dict[str, jax.Array]]


class LearnerOptions(BatchingOptions, total=False):
  """The options a learner factory takes besides its algorithm's own: how tasks
  are batched (``BatchingOptions``: ``batching``, ``chunk_size``) and which query
  metrics it reports besides the loss (``metrics_fn``)."""

  metrics_fn: MetricsFn | None


class MetaGradient(NamedTuple):
  """The meta-gradient (a pytree like the meta-params) and scalar metrics.

  ``metrics['loss']`` is the query loss after adaptation (averaged over tasks in
  ``meta_gradient``); gradient learners add ``metrics['support_loss']``, the
  support loss before adaptation.
  """

  grads: Params
  metrics: dict[str, jax.Array]


class ClassLabels(NamedTuple):
  """What a classifier's labels must be, known from shapes at trace time.

  Every support and query label is an integer in ``[0, num_classes)``; with
  ``every_class_in_support`` (metric learners: an ``n_way``-way episode) every class
  in that range also labels at least one support example of each task.
  """

  num_classes: int
  every_class_in_support: bool = False


class Carry(NamedTuple):
  """How meta-params split into what the outer optimizer trains and what the
  learner carries from one meta-update to the next.

  ``split(meta_params) -> (trained, carried)`` and ``merge(trained, carried) ->
  meta_params``. ``meta_gradient``'s ``grads`` have the meta-params' structure: their
  trained part is the gradient, their carried part the carried state's next value,
  which the outer loop puts in place of the old one (the optimizer never sees it).
  """

  split: Callable[[MetaParams], tuple[Any, Any]]
  merge: Callable[[Any, Any], MetaParams]


def _trains_everything(meta_params: MetaParams) -> tuple[MetaParams, tuple]:
  return meta_params, ()


def _nothing_carried(trained: MetaParams, carried: tuple) -> MetaParams:
  del carried
  return trained


NO_CARRY = Carry(_trains_everything, _nothing_carried)
"""The ``Carry`` of a learner whose meta-params are all trained (every learner but
those built with a persistent inner state)."""


class MetaLearner(NamedTuple):
  """A meta-learning algorithm as pure functions.

  Attributes:
    name: the algorithm's name, for logs and reports.
    init: ``init(model_params) -> meta_params``.
    meta_gradient: ``meta_gradient(meta_params, batch, step=None) -> MetaGradient``,
      the mean over the tasks of a ``TaskBatch``, batched as the learner was built.
    predict: ``predict(meta_params, support_inputs, support_targets,
      query_inputs) -> outputs`` for one task (no leading task axis).
    task_gradient: ``task_gradient(meta_params, task, step=None) -> MetaGradient``
      for one ``Task``: the function ``meta_gradient`` averages.
    init_gradient: maps a meta-gradient to the gradient with respect to the model's
      initialisation (a pytree like the model params), the part that compares
      across learners. The identity where the meta-params are the model params.
    class_labels: None, or ``class_labels(meta_params, batch) -> ClassLabels |
      None``, called at trace time: what the batch's labels must be (None where
      its targets are not class labels, e.g. regression). ``make_meta_trainer``
      checks every batch against it on device and reports a violation through
      ``raise_if_nonfinite``.
    carry: which part of the meta-params the outer loop trains and which the
      learner carries (``Carry``); ``NO_CARRY`` by default.
  """

  name: str
  init: Callable[[Params], MetaParams]
  meta_gradient: Callable[..., MetaGradient]
  predict: Callable[[MetaParams, jax.Array, jax.Array, jax.Array], jax.Array]
  task_gradient: Callable[..., MetaGradient]
  init_gradient: Callable[[MetaParams], Params]
  class_labels: Callable[[MetaParams, TaskBatch], ClassLabels | None] | None = None
  carry: Carry = NO_CARRY


def identity(tree: Any) -> Any:
  """``tree`` itself: ``init`` and ``init_gradient`` of learners that train the model's
  params directly."""
  return tree


def adapt_then_apply(
  model: Model, adapt: Callable[[MetaParams, jax.Array, jax.Array], Params]
) -> Callable[[MetaParams, jax.Array, jax.Array, jax.Array], jax.Array]:
  """The ``predict`` of a learner that adapts, then applies ``model``:
  ``model.apply(adapt(meta_params, support_inputs, support_targets), query_inputs)``.
  """

  def predict(meta_params, support_inputs, support_targets, query_inputs):
    adapted = adapt(meta_params, support_inputs, support_targets)
    return model.apply(adapted, query_inputs)

  return predict


def output_classes(outputs: Any, targets: Any) -> ClassLabels | None:
  """``ClassLabels(C)`` if ``outputs`` are logits over C classes of integer ``targets``.

  That is, the targets have an integer dtype and the outputs their shape plus one
  axis of size C (a classifier's head; ``jmeta.losses.cross_entropy``); None
  otherwise (regression). Reads shapes and dtypes only.
  """
  out_shape, tgt_shape = tuple(np.shape(outputs)), tuple(np.shape(targets))
  if not jnp.issubdtype(jnp.result_type(targets), jnp.integer):
    return None
  if len(out_shape) != len(tgt_shape) + 1 or out_shape[:-1] != tgt_shape:
    return None
  return ClassLabels(int(out_shape[-1]))


def label_violation(batch: TaskBatch, labels: ClassLabels) -> tuple[jax.Array, ...]:
  """``(bad, lowest, highest)``: whether ``batch`` breaks ``labels``, on device.

  ``lowest`` and ``highest`` are the extreme labels of the batch (support and
  query). A few integer reductions over the labels: cheap beside any meta-step.
  """
  support = jnp.asarray(batch.support_targets)
  query = jnp.asarray(batch.query_targets)
  lowest = jnp.minimum(support.min(), query.min()).astype(jnp.int32)
  highest = jnp.maximum(support.max(), query.max()).astype(jnp.int32)
  bad = (lowest < 0) | (highest >= labels.num_classes)
  if labels.every_class_in_support:
    tasks = support.shape[0]
    classes = jnp.arange(labels.num_classes, dtype=support.dtype)
    present = jnp.any(support.reshape(tasks, -1, 1) == classes, axis=1)
    bad = bad | ~jnp.all(present)
  return bad, lowest, highest


def over_tasks(
  task_fn: Callable[..., Any],
  *,
  batching: str = 'auto',
  chunk_size: int | None = None,
  check: Callable[[MetaParams, TaskBatch], None] | None = None,
) -> Callable[..., Any]:
  """``fn(meta_params, batch, *args)``: the mean over tasks of ``task_fn(meta_params,
  task, *args)``.

  Checks the batch's shapes and runs ``check(meta_params, batch)`` at trace time
  only (the compiled step carries none of it), then batches the tasks with
  ``jmeta.batching.mean_over_tasks``. Every learner builds its ``meta_gradient``
  here.
  """
  check_batching(batching, chunk_size)

  def fn(meta_params: MetaParams, batch: TaskBatch, *args):
    check_task_batch_shapes(batch)
    if check is not None:
      check(meta_params, batch)
    return mean_over_tasks(
      lambda task: task_fn(meta_params, Task(*task), *args),
      batch,
      strategy=batching,
      chunk_size=chunk_size,
    )

  return fn


def per_task(
  fn: Callable[[Task], Any],
  batch: TaskBatch,
  *,
  batching: str = 'auto',
  chunk_size: int | None = None,
) -> Any:
  """``fn(task)`` for every ``Task`` of ``batch``, stacked along a leading task axis.

  The counterpart of ``over_tasks`` for per-task results (predictions, evaluation
  metrics): checks the batch's shapes at trace time, then batches the tasks with
  ``jmeta.batching.map_tasks``.
  """
  check_task_batch_shapes(batch)
  return map_tasks(
    lambda task: fn(Task(*task)), batch, strategy=batching, chunk_size=chunk_size
  )


def _predict(learner: MetaLearner, meta_params: MetaParams, task: Task) -> jax.Array:
  return learner.predict(
    meta_params, task.support_inputs, task.support_targets, task.query_inputs
  )


@lists_options(BatchingOptions, per_task)
def predict_tasks(
  learner: MetaLearner,
  meta_params: MetaParams,
  batch: TaskBatch,
  **batching: Unpack[BatchingOptions],
) -> jax.Array:
  """``learner.predict`` on every task of ``batch``: outputs with a leading task axis."""
  return per_task(lambda task: _predict(learner, meta_params, task), batch, **batching)


@lists_options(BatchingOptions, per_task)
def evaluate(
  learner: MetaLearner,
  meta_params: MetaParams,
  batch: TaskBatch,
  metrics_fn: MetricsFn,
  **batching: Unpack[BatchingOptions],
) -> dict[str, jax.Array]:
  """Per-task ``metrics_fn(predictions, query_targets)``, each with a leading task axis.

  Example: ``jmeta.evaluate(learner, meta_params, batch,
  jmeta.losses.classification_metrics)['accuracy']``.
  """

  def metrics(task: Task) -> dict[str, jax.Array]:
    return metrics_fn(_predict(learner, meta_params, task), task.query_targets)

  return per_task(metrics, batch, **batching)
