"""Implicit MAML on Omniglot (Rajeswaran et al., 2019).

jmeta's choices, not the paper's exact recipe: MAML's inner loop and meta-batch for the
setting, proximal regularization lambda = 2.0, 5 conjugate-gradient steps, Adam 1e-3.
Test-time adaptation runs the same proximal inner loop.
"""

import ml_collections

from experiments.omniglot.configs import maml


def get_config(setting: str = '5w1s'):
  config = maml.get_config(setting)
  config.algorithm = 'imaml'
  config.imaml = ml_collections.ConfigDict()
  config.imaml.regularization = 2.0
  config.imaml.cg_steps = 5
  return config
