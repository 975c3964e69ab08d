"""MAML-RL on 2D navigation (Finn et al., 2017): meta-train, then returns against
adaptation steps on held-out goals.

  python -m experiments.meta_rl.main --workdir=runs/meta_rl \
      [--config=experiments/meta_rl/configs/default.py] [--config.num_iterations=100]

Re-running with the same --workdir resumes from its latest checkpoint.
"""

import pathlib

from absl import app, flags, logging
from ml_collections import config_flags

from experiments.meta_rl import train

_DEFAULT_CONFIG = str(pathlib.Path(__file__).parent / 'configs' / 'default.py')

_WORKDIR = flags.DEFINE_string(
  'workdir', None, 'Directory for checkpoints, metrics and results.'
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
