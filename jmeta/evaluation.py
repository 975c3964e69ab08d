"""Evaluation: adaptation curves over many held-out tasks, with confidence intervals."""

from __future__ import annotations

import math
import statistics
from typing import TYPE_CHECKING

import jax
import numpy as np

from jmeta.batching import BatchingOptions
from jmeta.inner_loop import InnerOptimizerOptions, LossFn, adapt, adaptation_curve
from jmeta.learner import MetricsFn, per_task
from jmeta.models.base import Model, Params
from jmeta.options import lists_options, split_options
from jmeta.tasks.batch import Task, TaskBatch

if TYPE_CHECKING:
  from typing_extensions import Unpack


class EvaluationOptions(InnerOptimizerOptions, BatchingOptions, total=False):
  """How each task adapts (``jmeta.adapt``'s inner optimizer) and how the tasks are
  batched."""


@lists_options(EvaluationOptions, adapt, per_task)
def adaptation_curves(
  model: Model,
  loss_fn: LossFn,
  params: Params,
  batch: TaskBatch,
  *,
  steps: int,
  **options: Unpack[EvaluationOptions],
) -> jax.Array:
  """Per-task query loss after 0..``steps`` inner updates: shape ``(tasks, steps+1)``."""
  optimizer, batching = split_options(options, InnerOptimizerOptions)

  def curve(task: Task) -> jax.Array:
    return adaptation_curve(
      model,
      loss_fn,
      params,
      (task.support_inputs, task.support_targets),
      (task.query_inputs, task.query_targets),
      steps=steps,
      **optimizer,
    )

  return per_task(curve, batch, **batching)


@lists_options(EvaluationOptions, adapt, per_task)
def evaluate_adapted(
  model: Model,
  loss_fn: LossFn,
  params: Params,
  batch: TaskBatch,
  *,
  steps: int,
  metrics_fn: MetricsFn | None = None,
  **options: Unpack[EvaluationOptions],
) -> dict[str, jax.Array]:
  """Per-task query ``loss`` (and ``metrics_fn``'s metrics) after ``steps`` updates.

  Each task adapts ``params`` on its own support set with ``jmeta.adapt``; every
  returned array has a leading task axis.
  """
  optimizer, batching = split_options(options, InnerOptimizerOptions)

  def one(task: Task) -> dict[str, jax.Array]:
    adapted = adapt(
      model,
      loss_fn,
      params,
      task.support_inputs,
      task.support_targets,
      steps=steps,
      **optimizer,
    )
    outputs = model.apply(adapted, task.query_inputs)
    metrics = {'loss': loss_fn(outputs, task.query_targets)}
    if metrics_fn is not None:
      metrics.update(metrics_fn(outputs, task.query_targets))
    return metrics

  return per_task(one, batch, **batching)


def mean_confidence_interval(
  values, confidence: float = 0.95, axis: int = 0
) -> tuple[np.ndarray, np.ndarray]:
  """Mean and the half-width of its normal-approximation confidence interval.

  half-width = z * s / sqrt(n), s the sample standard deviation (ddof=1), z the
  two-sided standard-normal quantile (1.96 for 95%).
  """
  values = np.asarray(values, dtype=np.float64)
  n = values.shape[axis]
  if n < 2:
    raise ValueError(f'need at least 2 values for a confidence interval, got {n}.')
  if not 0 < confidence < 1:
    raise ValueError(f'confidence must be in (0, 1), got {confidence}.')
  z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2)
  mean = values.mean(axis=axis)
  half = z * values.std(axis=axis, ddof=1) / math.sqrt(n)
  return mean, half
