"""jmeta: meta-learning in JAX.

Pure functions over one pytree model interface: ``adapt`` for the inner loop,
meta-gradient estimators (``maml``, ``fomaml``, ``reptile``, ``pretrain``) behind one
signature, metric learners (``jmeta.metric``: Prototypical, Matching, Relation and
Siamese networks) behind the same estimator signature, and a jit-compiled optax
outer loop that can shard the tasks over devices.
"""

from jmeta import losses, metric
from jmeta.batching import (
  BATCHING_STRATEGIES,
  default_batching,
  map_tasks,
  mean_over_tasks,
)
from jmeta.estimators import (
  ESTIMATORS,
  MetaGradient,
  MetaGradientEstimator,
  fomaml,
  make_estimator,
  maml,
  pretrain,
  reptile,
)
from jmeta.evaluation import (
  adaptation_curves,
  evaluate_adapted,
  mean_confidence_interval,
)
from jmeta.inner_loop import adapt, adaptation_curve
from jmeta.models import (
  BATCH_NORM_MODES,
  TRANSDUCTIVE,
  Model,
  conv4,
  from_linen,
  from_nnx,
  mlp,
)
from jmeta.outer_loop import (
  MetaTrainer,
  MetaTrainState,
  NonFiniteMetaLossError,
  make_meta_trainer,
  raise_if_nonfinite,
)
from jmeta.sharding import (
  replicate,
  shard_task_batch,
  sharded_meta_gradient,
  task_mesh,
  task_sharding,
)
from jmeta.tasks import Task, TaskBatch, sinusoid_tasks, validate_task_batch

__version__ = '0.1.0'

__all__ = [
  'BATCHING_STRATEGIES',
  'BATCH_NORM_MODES',
  'ESTIMATORS',
  'MetaGradient',
  'MetaGradientEstimator',
  'MetaTrainState',
  'MetaTrainer',
  'Model',
  'NonFiniteMetaLossError',
  'TRANSDUCTIVE',
  'Task',
  'TaskBatch',
  'adapt',
  'adaptation_curve',
  'adaptation_curves',
  'conv4',
  'default_batching',
  'evaluate_adapted',
  'fomaml',
  'from_linen',
  'from_nnx',
  'losses',
  'make_estimator',
  'make_meta_trainer',
  'maml',
  'map_tasks',
  'mean_confidence_interval',
  'mean_over_tasks',
  'metric',
  'mlp',
  'pretrain',
  'raise_if_nonfinite',
  'replicate',
  'reptile',
  'shard_task_batch',
  'sharded_meta_gradient',
  'sinusoid_tasks',
  'task_mesh',
  'task_sharding',
  'validate_task_batch',
]
