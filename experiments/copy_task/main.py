"""The NTM copy task (Graves et al., 2014, Sec. 4.1): train, then cost vs length.

  python -m experiments.copy_task.main --workdir=runs/copy_ntm \
      [--config=experiments/copy_task/configs/ntm.py] [--config.num_updates=1000]
"""

import pathlib

from absl import app, flags, logging
from ml_collections import config_flags

from experiments.copy_task import train

_DEFAULT_CONFIG = str(pathlib.Path(__file__).parent / 'configs' / 'ntm.py')

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
