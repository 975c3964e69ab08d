"""Sinusoid regression: MAML vs first-order MAML vs Reptile vs pretraining.

  python -m experiments.sinusoid.main --workdir=runs/sinusoid \
      [--config=experiments/sinusoid/configs/default.py] [--config.num_iterations=1000]
"""

from experiments.common import cli
from experiments.sinusoid import train

if __name__ == '__main__':
  cli.run_experiment(
    'experiments.sinusoid',
    train.train_and_evaluate,
    'default.py',
    'Directory for metrics, results and plots.',
  )
