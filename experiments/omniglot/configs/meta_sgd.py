"""Meta-SGD on Omniglot (Li et al., 2017): per-parameter inner rates learned with the init.

One inner step (the paper's setting), rates initialised at MAML's rate for the setting,
meta-batch and outer Adam as MAML's config.
"""

from experiments.omniglot.configs import maml


def get_config(setting: str = '5w1s'):
  config = maml.get_config(setting)
  config.algorithm = 'meta_sgd'
  config.inner_steps = 1
  config.eval.inner_steps = 1
  return config
