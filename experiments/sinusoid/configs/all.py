"""Every gradient-based learner in jmeta on the sinusoid tasks, through one code path.

The default config's four, then iMAML, Meta-SGD, ANIL and MAML++ with jmeta's
choices for a 40-40 MLP (none of their papers ran sinusoid regression): one SGD
step at 0.01 where they take one, iMAML five proximal steps at 0.01 with
lambda = 1, ANIL adapting the output layer, MAML++ five steps with learned
per-layer, per-step rates and the multi-step loss annealed over 5,000 iterations,
the meta-LSTM five steps of its rule at the reference code's initialisation.
"""

import ml_collections

from experiments.sinusoid.configs import default


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  config.algorithms = (
    *config.algorithms,
    'imaml',
    'meta_sgd',
    'anil',
    'maml_plus_plus',
    'meta_lstm',
  )
  config.imaml = ml_collections.ConfigDict(
    {'inner_steps': 5, 'inner_learning_rate': 0.01, 'regularization': 1.0}
  )
  config.meta_sgd = ml_collections.ConfigDict(
    {'inner_steps': 1, 'inner_learning_rate': 0.01}
  )
  config.anil = ml_collections.ConfigDict(
    {'inner_steps': 1, 'inner_learning_rate': 0.01, 'head': 'layer_2'}
  )
  config.maml_plus_plus = ml_collections.ConfigDict(
    {
      'inner_steps': 5,
      'inner_learning_rate': 0.01,
      'msl_anneal_iterations': 5_000,
      'learn_inner_rates': True,
    }
  )
  config.meta_lstm = ml_collections.ConfigDict({'inner_steps': 5})
  return config
