"""jmeta: meta-learning in JAX.

Pure functions over one pytree model interface: ``adapt`` for the inner loop,
meta-gradient estimators (``maml``, ``fomaml``, ``reptile``, ``pretrain``, ``imaml``,
``meta_sgd``, ``anil``) behind one signature, metric learners (``jmeta.metric``: Prototypical, Matching, Relation and
Siamese networks) behind the same estimator signature, and a jit-compiled optax
outer loop that can shard the tasks over devices.
"""

from jmeta import losses, metric
from jmeta.anil import anil, anil_adapt, head_mask
from jmeta.batching import (
  BATCHING_STRATEGIES,
  default_batching,
  map_tasks,
  mean_over_tasks,
)
from jmeta.compare import (
  GradientComparison,
  compare_estimators,
  default_estimators,
  maml_plus_plus_at,
)
from jmeta.compilation import precompile, release_host_memory
from jmeta.estimators import (
  MetaGradient,
  MetaGradientEstimator,
  fomaml,
  maml,
  pretrain,
  reptile,
)
from jmeta.evaluation import (
  adaptation_curves,
  evaluate_adapted,
  mean_confidence_interval,
)
from jmeta.imaml import imaml, imaml_adapt
from jmeta.inner_loop import adapt, adaptation_curve
from jmeta.maml_plus_plus import (
  MAMLPlusPlusParams,
  maml_plus_plus,
  maml_plus_plus_adapt,
  maml_plus_plus_params,
  msl_weights,
)
from jmeta.meta_sgd import MetaSGDParams, meta_sgd, meta_sgd_adapt, meta_sgd_params
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
  MetaStepOutOfMemoryError,
  MetaTrainer,
  MetaTrainState,
  NonFiniteMetaLossError,
  make_meta_trainer,
  raise_if_nonfinite,
)
from jmeta.registry import ESTIMATORS, make_estimator
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
  'GradientComparison',
  'MAMLPlusPlusParams',
  'MetaGradient',
  'MetaGradientEstimator',
  'MetaSGDParams',
  'MetaTrainState',
  'MetaTrainer',
  'Model',
  'NonFiniteMetaLossError',
  'MetaStepOutOfMemoryError',
  'TRANSDUCTIVE',
  'Task',
  'TaskBatch',
  'adapt',
  'anil',
  'anil_adapt',
  'adaptation_curve',
  'adaptation_curves',
  'compare_estimators',
  'conv4',
  'default_estimators',
  'maml_plus_plus_at',
  'default_batching',
  'evaluate_adapted',
  'fomaml',
  'from_linen',
  'from_nnx',
  'head_mask',
  'imaml',
  'imaml_adapt',
  'losses',
  'make_estimator',
  'make_meta_trainer',
  'maml_plus_plus',
  'maml_plus_plus_adapt',
  'maml_plus_plus_params',
  'maml',
  'map_tasks',
  'mean_confidence_interval',
  'mean_over_tasks',
  'meta_sgd',
  'meta_sgd_adapt',
  'meta_sgd_params',
  'metric',
  'mlp',
  'msl_weights',
  'precompile',
  'pretrain',
  'raise_if_nonfinite',
  'replicate',
  'release_host_memory',
  'reptile',
  'shard_task_batch',
  'sharded_meta_gradient',
  'sinusoid_tasks',
  'task_mesh',
  'task_sharding',
  'validate_task_batch',
]
