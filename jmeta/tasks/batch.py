"""Task batches: the one data structure every meta-learner consumes."""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np


class TaskBatch(NamedTuple):
  """A batch of tasks with a leading task axis on every field.

  Shapes: ``support_inputs`` is ``(tasks, support, *features)``, ``support_targets``
  is ``(tasks, support, *target_dims)``, and likewise for the query set. For
  classification the targets are integer labels in ``[0, n_way)``.

  Batches from the episode sampler (``jmeta.data.make_episode_sampler``) hold images
  as float32 in [0, 1], shaped ``(tasks, n_way * shots, height, width, 1)``, and
  labels as int32 in ``[0, n_way)``, shaped ``(tasks, n_way * shots)``. Sinusoid
  tasks (``jmeta.sinusoid_tasks``) hold float inputs and targets of shape
  ``(tasks, shots, 1)``, float32 unless another ``dtype`` is asked for.
  """

  support_inputs: jax.Array
  support_targets: jax.Array
  query_inputs: jax.Array
  query_targets: jax.Array

  @property
  def num_tasks(self) -> int:
    return self.support_inputs.shape[0]


class Task(NamedTuple):
  """One task: a ``TaskBatch`` without the leading task axis."""

  support_inputs: jax.Array
  support_targets: jax.Array
  query_inputs: jax.Array
  query_targets: jax.Array


def check_task_batch_shapes(batch: TaskBatch) -> None:
  """Raises ``ValueError`` if the shapes of ``batch`` cannot form tasks.

  Only shapes are read, so this is free under ``jit`` (it runs at trace time).
  """
  if not isinstance(batch, (TaskBatch, Task)):
    raise TypeError(
      f'expected a jmeta.TaskBatch, got {type(batch).__name__}; build one with '
      'TaskBatch(support_inputs, support_targets, query_inputs, query_targets).'
    )
  names = batch._fields
  shapes = [np.shape(x) for x in batch]
  for name, shape in zip(names, shapes):
    if len(shape) < 2:
      raise ValueError(
        f'{name} has shape {shape}; a TaskBatch needs a leading task axis and an '
        'example axis, i.e. (tasks, examples, ...).'
      )
  tasks = {shape[0] for shape in shapes}
  if len(tasks) != 1:
    raise ValueError(
      'all TaskBatch fields need the same number of tasks (leading axis); got '
      + ', '.join(f'{n}={s[0]}' for n, s in zip(names, shapes))
      + '.'
    )
  s_in, s_tg, q_in, q_tg = shapes
  for name, inputs, targets, use in (
    ('support', s_in, s_tg, 'adapt on'),
    ('query', q_in, q_tg, 'compute the meta-loss'),
  ):
    if inputs[1] == 0:
      raise ValueError(
        f'the {name} set is empty ({name}_inputs has shape {inputs}); every task '
        f'needs at least one {name} example to {use}.'
      )
    if targets[:2] != inputs[:2]:
      raise ValueError(
        f'{name}_targets has shape {targets} but {name}_inputs has {inputs}; they '
        'need the same (tasks, examples) leading axes.'
      )
  if s_in[2:] != q_in[2:]:
    raise ValueError(
      f'support and query inputs have different feature shapes: support '
      f'{s_in[2:]} vs query {q_in[2:]}; both sets must come from the same input '
      'space.'
    )
  if s_tg[2:] != q_tg[2:]:
    raise ValueError(
      f'support and query targets have different shapes per example: '
      f'{s_tg[2:]} vs {q_tg[2:]}.'
    )


def validate_task_batch(batch: TaskBatch, *, num_classes: int | None = None) -> None:
  """Checks shapes and, for classification, label values. Call outside ``jit``.

  Args:
    batch: the task batch to check.
    num_classes: if given, targets must be integers in ``[0, num_classes)``.

  Raises:
    ValueError: naming the field and what is wrong with it.
  """
  check_task_batch_shapes(batch)
  if num_classes is None:
    return
  if num_classes < 1:
    raise ValueError(f'num_classes must be positive, got {num_classes}.')
  for name in ('support_targets', 'query_targets'):
    labels = np.asarray(getattr(batch, name))
    if not np.issubdtype(labels.dtype, np.integer):
      raise ValueError(
        f'{name} has dtype {labels.dtype}; classification labels must be integers '
        f'in [0, {num_classes}).'
      )
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= num_classes:
      raise ValueError(
        f'{name} has labels in [{lo}, {hi}], outside [0, {num_classes}); relabel '
        f"each task's classes as 0..{num_classes - 1} (n_way={num_classes})."
      )
