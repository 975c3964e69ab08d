"""Implicit MAML on Omniglot (Rajeswaran et al., 2019), as its reference code runs it.

The reference code (aravindr93/imaml_dev: ``examples/README.md``,
``examples/omniglot_implicit_maml.py``, ``implicit_maml/learner_model.py``):

- inner loop: 16 plain SGD steps at 0.1 on the mean support cross-entropy, without
  the proximal term, then one "pull back" step phi <- phi - 0.1 lambda (phi - theta)
  with lambda = 2 (``pull_back_rate``, ``jmeta.inner_rules.pulled_back``);
- meta-gradient: 5 conjugate-gradient steps on the damped system
  (1 + 1) v + H v / (lambda + 10) = grad L^query (``cg_damping`` = 1,
  ``hessian_damping`` = 10), not the (I + H / lambda) of the paper's formula;
- meta-batch 32, Adam at 1e-3 with eps = 1e-3, at least 20,000 meta-steps (its
  README; the iteration count here);
- test: 16 SGD steps at 0.1 with lambda = 0.

Deviations: jmeta's test-time adaptation is the training inner loop, so it ends with
the pull-back step too (phi - theta shrinks by a fifth); the network is MAML's
strided Conv4 with features averaged over space (the reference flattens its 2x2x64
map, initialises with Xavier gain 1.73 and biases U(0, 0.05)); 20-way uses the same
inner loop (the reference shows 5-way only); episodes are sampled fresh, where the
reference draws from a fixed pool of (at least) 200,000 pre-generated tasks.

Neither inner loop solves the proximal problem: training logs
``train_inner_gradient_ratio`` (the proximal objective's gradient norm at phi over
its value at theta) and ``train_cg_relative_residual`` (of the damped system), so
what the estimator computes is on record.
"""

import ml_collections

from experiments.omniglot.configs import maml


def get_config(setting: str = '5w1s'):
  config = maml.get_config(setting)
  config.algorithm = 'imaml'
  config.meta_batch_size = 32
  config.num_iterations = 20_000
  config.outer_adam_eps = 1e-3
  config.imaml = ml_collections.ConfigDict()
  config.imaml.regularization = 2.0
  config.imaml.pull_back_rate = 0.1
  config.imaml.cg_steps = 5
  config.imaml.cg_damping = 1.0
  config.imaml.hessian_damping = 10.0
  config.inner_steps = 16
  config.inner_learning_rate = 0.1
  config.eval.inner_steps = 16
  return config
