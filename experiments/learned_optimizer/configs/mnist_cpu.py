"""``mnist.py`` cut to a CPU budget (a shared 2-core machine, under an hour).

The same problem and protocol; 4 problems per meta-step (not 16), 300 meta-steps
at Adam 5e-3 (not 2,000 at 3e-3), baselines tuned on a grid 1e-3..3.16 (2 per
decade) over 32 problems, the test on 64 held-out problems. On that machine a
meta-step of 4 MNIST problems x 20 LSTM-optimized steps takes about 5 s.
"""

from experiments.learned_optimizer.configs import mnist


def get_config(setting: str = 'base'):
  config = mnist.get_config(setting)
  config.num_tasks = 4
  config.num_updates = 300
  config.meta_learning_rate = 5e-3
  config.log_every = 10
  config.checkpoint_every = 50
  config.tune.num_tasks = 32
  config.tune.learning_rates = tuple(10 ** (k / 2) for k in range(-6, 2))
  config.eval.num_tasks = 64
  return config
