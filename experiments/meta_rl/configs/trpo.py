"""The default config with TRPO as the outer optimiser, as in Finn et al. (2017).

``jmeta.rl.maml_trpo_step`` with pytorch-maml-rl's settings: max KL 0.01, damping
0.01, 10 conjugate-gradient iterations, 15 halvings in the line search. The
Hessian-vector products go through the inner step, so a meta-iteration costs
several Adam ones (about 6.6 s against 2.1 s on the shared 2-core CPU).
"""

import ml_collections

from experiments.meta_rl.configs import default


def get_config():
  config = default.get_config()
  config.outer = 'trpo'
  del config.learning_rate
  config.trpo = ml_collections.ConfigDict(
    {'max_kl': 0.01, 'damping': 0.01, 'cg_iterations': 10, 'line_search_steps': 15}
  )
  config.num_iterations = 150
  return config
