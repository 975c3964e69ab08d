"""Second-order MAML on Omniglot (Finn et al., 2017).

5-way: one inner step at 0.4 (summed loss), meta-batch 32. 20-way: five inner steps at
0.1 (summed loss), meta-batch 16. Adam 1e-3, 60k iterations. Usage:
``--config=experiments/omniglot/configs/maml.py:20w1s``.
"""

from experiments.omniglot.configs.base import get_base_config


def get_config(setting: str = '5w1s'):
  config = get_base_config(setting)
  config.algorithm = 'maml'
  if config.data.n_way == 20:
    config.meta_batch_size = 16
    config.inner_steps = 5
    config.inner_learning_rate = 0.1 * config.data.n_way
    config.eval.inner_steps = 5
    # iMAML in the comparison runs these five SGD steps on its proximal problem,
    # which converges only for rate * lambda < 2 (2.0 * 0.5 = 1).
    config.compare.imaml_regularization = 0.5
  return config
