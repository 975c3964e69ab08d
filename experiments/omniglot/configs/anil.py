"""ANIL on Omniglot (Raghu et al., 2020): only the linear head adapts in the inner loop.

MAML's settings for the setting; the Conv4 body is meta-learned through the head's
adaptation (second order).
"""

from experiments.omniglot.configs import maml


def get_config(setting: str = '5w1s'):
  config = maml.get_config(setting)
  config.algorithm = 'anil'
  return config
