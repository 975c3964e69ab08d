"""Implicit MAML on Omniglot (Rajeswaran et al., 2019).

jmeta's choices, not the paper's exact recipe: MAML's meta-batch and Adam 1e-3 for
the setting, proximal regularization lambda = 2.0, 5 conjugate-gradient steps, and an
inner loop that converges on the proximal problem: 5 SGD steps at 1 / lambda = 0.5,
each then the fixed-point iteration phi <- theta - grad L(phi) / lambda of the
optimality condition (MAML's rate of 2.0 would multiply phi - theta by
1 - 2.0 * 2.0 = -3 per step). Test-time adaptation runs the
same proximal inner loop.
"""

import ml_collections

from experiments.omniglot.configs import maml


def get_config(setting: str = '5w1s'):
  config = maml.get_config(setting)
  config.algorithm = 'imaml'
  config.imaml = ml_collections.ConfigDict()
  config.imaml.regularization = 2.0
  config.imaml.cg_steps = 5
  config.inner_steps = 5
  config.inner_learning_rate = 1 / config.imaml.regularization
  config.eval.inner_steps = 5
  return config
