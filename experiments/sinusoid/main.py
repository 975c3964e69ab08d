"""Sinusoid regression: MAML vs first-order MAML vs Reptile vs pretraining.

  python -m experiments.sinusoid.main --workdir=runs/sinusoid \
      [--config=experiments/sinusoid/configs/default.py] [--config.num_iterations=1000]
"""

import pathlib

from absl import app, flags, logging
from ml_collections import config_flags

from experiments.sinusoid import train

_DEFAULT_CONFIG = str(pathlib.Path(__file__).parent / 'configs' / 'default.py')

_WORKDIR = flags.DEFINE_string(
  'workdir', None, 'Directory for metrics, results and plots.'
)
config_flags.DEFINE_config_file(
  'config', _DEFAULT_CONFIG, 'Experiment configuration.', lock_config=True
)
flags.mark_flags_as_required(['workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.INFO)
  train.train_and_evaluate(flags.FLAGS.config, _WORKDIR.value)


if __name__ == '__main__':
  app.run(main)
