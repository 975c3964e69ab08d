"""Learned optimizers: update rules with meta-parameters, and how to meta-train them.

* Rules (``LearnedRule``: ``meta_init``, ``init``, ``update``, shaped like optax):
  ``lstm_rule`` (Andrychowicz et al., 2016) and ``mlp_rule`` (a per-parameter MLP
  in the style of learned_optimization's ``mlp_lopt``). ``as_optimizer(rule,
  meta_params)`` is an ordinary ``optax.GradientTransformation``.
* The meta-LSTM learner (Ravi & Larochelle, 2017) as an inner rule:
  ``meta_lstm_rule`` (``jmeta.meta_lstm`` is the learner built on it).
* Problems: ``TaskFamily`` (``sample``, ``init``, ``loss``, optionally a minibatch
  ``step_loss``), e.g. ``quadratics`` and ``mlp_classifiers`` (MNIST).
* Unrolls: ``unroll`` (one ``lax.scan``), ``init_inner_states``, ``loss_curves``,
  ``final_states_and_curves``.
* Meta-gradient estimators behind one interface (``UnrollEstimator``: ``init``,
  ``estimate``): ``full_backprop``, ``truncated_backprop``, ``antithetic_es``, ``pes``.

Example::

  from jmeta import learned_optimizers as lopt
  rule, family = lopt.lstm_rule(), lopt.quadratics(10)
  estimator = lopt.truncated_backprop(rule, family, steps=100, truncation=20,
                                      num_tasks=128)
  meta_params = rule.meta_init(jax.random.key(0))
  state = estimator.init(meta_params, jax.random.key(1))
  grad, state = estimator.estimate(meta_params, state, jax.random.key(2))
"""

from jmeta.learned_optimizers.base import (
  LearnedRule,
  as_inner_rule,
  as_optimizer,
  check_meta_params,
  check_state_matches,
)
from jmeta.learned_optimizers.estimators import (
  MetaTrainState,
  PESState,
  UnrollEstimator,
  antithetic_es,
  check_unroll,
  full_backprop,
  init_meta_train_state,
  meta_train_step,
  pes,
  sample_perturbations,
  truncated_backprop,
)
from jmeta.learned_optimizers.lstm import LSTMState, lstm_rule, preprocess_gradient
from jmeta.learned_optimizers.meta_lstm import (
  MetaLSTMState,
  meta_lstm_optimizer,
  meta_lstm_params,
  meta_lstm_rule,
)
from jmeta.learned_optimizers.mlp import MLPState, mlp_rule, sgd_meta_params
from jmeta.learned_optimizers.tasks import (
  MLPClassifierTask,
  Quadratic,
  TaskFamily,
  batch_indices,
  loss_at_step,
  mlp_classifiers,
  mlp_cross_entropy,
  mlp_logits,
  quadratics,
)
from jmeta.learned_optimizers.unroll import (
  InnerState,
  final_states_and_curves,
  init_inner_state,
  init_inner_states,
  loss_curves,
  unroll,
)

__all__ = [
  'InnerState',
  'LSTMState',
  'LearnedRule',
  'MLPClassifierTask',
  'MLPState',
  'MetaLSTMState',
  'MetaTrainState',
  'PESState',
  'Quadratic',
  'TaskFamily',
  'UnrollEstimator',
  'antithetic_es',
  'as_inner_rule',
  'as_optimizer',
  'batch_indices',
  'check_meta_params',
  'check_state_matches',
  'check_unroll',
  'final_states_and_curves',
  'full_backprop',
  'init_inner_state',
  'init_inner_states',
  'init_meta_train_state',
  'loss_at_step',
  'loss_curves',
  'lstm_rule',
  'meta_lstm_optimizer',
  'meta_lstm_params',
  'meta_lstm_rule',
  'meta_train_step',
  'mlp_classifiers',
  'mlp_cross_entropy',
  'mlp_logits',
  'mlp_rule',
  'pes',
  'preprocess_gradient',
  'quadratics',
  'sample_perturbations',
  'sgd_meta_params',
  'truncated_backprop',
  'unroll',
]
