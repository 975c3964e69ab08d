"""Sinusoid regression: MAML vs first-order MAML vs Reptile vs pretraining.

  python -m experiments.sinusoid.main --workdir=runs/sinusoid \
      [--config=experiments/sinusoid/configs/default.py] [--config.num_iterations=1000]
"""

import pathlib

from experiments.common import cli
from experiments.sinusoid import train

_WORKDIR = cli.define_flags(
  str(pathlib.Path(__file__).parent / 'configs' / 'default.py'),
  'Directory for metrics, results and plots.',
)

if __name__ == '__main__':
  cli.run(
    'python -m experiments.sinusoid.main',
    cli.train_main(train.train_and_evaluate, _WORKDIR),
    _WORKDIR,
  )
