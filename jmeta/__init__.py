"""jmeta: meta-learning in JAX.

Every algorithm is a ``MetaLearner``, a NamedTuple of pure functions
(``init``, ``meta_gradient``, ``predict``): gradient-based learners (``maml``,
``fomaml``, ``reptile``, ``imaml``, ``meta_sgd``, ``anil``, ``maml_plus_plus``,
``pretrain``, or any pairing of an inner rule from ``jmeta.inner_rules`` with an
estimator from ``jmeta.estimators`` in ``gradient_learner``) and metric learners
(``jmeta.metric``: Prototypical, Matching, Relation and Siamese networks) and
neural processes (``jmeta.neural_processes``: CNP, NP and ANP). The neural
statistician (``jmeta.neural_statistician``) is a generative model of sets. One
jit-compiled optax outer loop trains them all and can shard the tasks over devices.
"""

from jmeta import (
  estimators,
  inner_rules,
  learned_optimizers,
  losses,
  memory,
  metric,
  neural_processes,
  neural_statistician,
  xla_workarounds,
)
from jmeta.algorithms.anil import anil, anil_adapt
from jmeta.algorithms.imaml import imaml, imaml_adapt
from jmeta.algorithms.maml import fomaml, maml
from jmeta.algorithms.maml_plus_plus import (
  MAMLPlusPlusParams,
  maml_plus_plus,
  maml_plus_plus_adapt,
  maml_plus_plus_params,
  msl_weights,
)
from jmeta.algorithms.meta_lstm import meta_lstm
from jmeta.algorithms.meta_sgd import meta_sgd, meta_sgd_adapt, meta_sgd_params
from jmeta.algorithms.pretrain import pretrain
from jmeta.algorithms.reptile import reptile
from jmeta.batching import (
  BATCHING_STRATEGIES,
  default_batching,
  map_tasks,
  mean_over_tasks,
  mean_over_tasks_in_order,
)
from jmeta.compare import (
  GradientComparison,
  compare_estimators,
  default_estimators,
  format_comparison,
  layer_cosines,
  maml_plus_plus_at,
  tree_cosine,
  tree_norm_ratio,
  tree_relative_error,
)
from jmeta.compilation import precompile, release_host_memory
from jmeta.evaluation import (
  adaptation_curves,
  evaluate_adapted,
  mean_confidence_interval,
)
from jmeta.gradient_learner import (
  GradientOptions,
  InnerStateParams,
  MetaParams,
  gradient_learner,
)
from jmeta.inner_loop import adapt, adaptation_curve
from jmeta.inner_rules import InnerRule, head_mask
from jmeta.learner import (
  NO_CARRY,
  Carry,
  MetaGradient,
  MetaLearner,
  evaluate,
  over_tasks,
  predict_tasks,
)
from jmeta.models import (
  BATCH_NORM_MODES,
  TRANSDUCTIVE,
  Model,
  conv4,
  from_linen,
  from_nnx,
  mlp,
)
from jmeta.neural_processes import (
  attentive_neural_process,
  conditional_neural_process,
  gp_tasks,
  latent_neural_process,
  neural_process_learner,
)
from jmeta.outer_loop import (
  MEMORY_KNOBS,
  BadLabelsError,
  MetaStepOutOfMemoryError,
  MetaTrainer,
  MetaTrainState,
  NonFiniteMetaLossError,
  ZeroMetaGradientError,
  is_out_of_memory,
  make_meta_trainer,
  out_of_memory_error,
  raise_if_failed,
  raise_if_nonfinite,
  with_task_sampling,
)
from jmeta.registry import LEARNERS, make_learner
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
  'BadLabelsError',
  'Carry',
  'GradientComparison',
  'GradientOptions',
  'InnerRule',
  'InnerStateParams',
  'LEARNERS',
  'MAMLPlusPlusParams',
  'MEMORY_KNOBS',
  'MetaGradient',
  'MetaLearner',
  'MetaParams',
  'MetaStepOutOfMemoryError',
  'MetaTrainState',
  'MetaTrainer',
  'Model',
  'NO_CARRY',
  'NonFiniteMetaLossError',
  'TRANSDUCTIVE',
  'Task',
  'TaskBatch',
  'ZeroMetaGradientError',
  'adapt',
  'adaptation_curve',
  'adaptation_curves',
  'anil',
  'anil_adapt',
  'attentive_neural_process',
  'compare_estimators',
  'conditional_neural_process',
  'conv4',
  'default_batching',
  'default_estimators',
  'estimators',
  'evaluate',
  'evaluate_adapted',
  'fomaml',
  'format_comparison',
  'from_linen',
  'from_nnx',
  'gp_tasks',
  'gradient_learner',
  'head_mask',
  'imaml',
  'imaml_adapt',
  'inner_rules',
  'is_out_of_memory',
  'latent_neural_process',
  'layer_cosines',
  'losses',
  'make_learner',
  'make_meta_trainer',
  'maml',
  'maml_plus_plus',
  'maml_plus_plus_adapt',
  'maml_plus_plus_at',
  'maml_plus_plus_params',
  'map_tasks',
  'mean_confidence_interval',
  'mean_over_tasks',
  'mean_over_tasks_in_order',
  'learned_optimizers',
  'memory',
  'meta_lstm',
  'meta_sgd',
  'meta_sgd_adapt',
  'meta_sgd_params',
  'metric',
  'mlp',
  'msl_weights',
  'neural_process_learner',
  'neural_processes',
  'neural_statistician',
  'out_of_memory_error',
  'over_tasks',
  'precompile',
  'predict_tasks',
  'pretrain',
  'raise_if_failed',
  'raise_if_nonfinite',
  'release_host_memory',
  'replicate',
  'reptile',
  'shard_task_batch',
  'sharded_meta_gradient',
  'sinusoid_tasks',
  'task_mesh',
  'task_sharding',
  'tree_cosine',
  'tree_norm_ratio',
  'tree_relative_error',
  'validate_task_batch',
  'with_task_sampling',
  'xla_workarounds',
]
