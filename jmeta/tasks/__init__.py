"""Task batches and task families."""

from jmeta.tasks.batch import (
  Task,
  TaskBatch,
  check_task_batch_shapes,
  validate_task_batch,
)
from jmeta.tasks.sinusoid import (
  SinusoidParams,
  SinusoidTasks,
  sinusoid_function,
  sinusoid_tasks,
)

__all__ = [
  'SinusoidParams',
  'SinusoidTasks',
  'Task',
  'TaskBatch',
  'check_task_batch_shapes',
  'sinusoid_function',
  'sinusoid_tasks',
  'validate_task_batch',
]
