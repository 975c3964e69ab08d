"""First-order MAML on Omniglot: MAML's settings with dphi/dtheta taken as I."""

from experiments.omniglot.configs import maml


def get_config(setting: str = '5w1s'):
  config = maml.get_config(setting)
  config.algorithm = 'fomaml'
  return config
