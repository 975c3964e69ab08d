"""Neural processes (CNP, NP, ANP) and MAML on GP and sinusoid function regression.

  python -m experiments.neural_processes.main --workdir=runs/np/anp_gp_random \
      --config=experiments/neural_processes/configs/anp.py:gp_random \
      [--config.num_iterations=6000]

A stopped run resumes from its workdir's latest checkpoint when started again with
the same command.
"""

import pathlib

from absl import app, flags, logging
from ml_collections import config_flags

from experiments.neural_processes import train

_DEFAULT_CONFIG = str(pathlib.Path(__file__).parent / 'configs' / 'anp.py')

_WORKDIR = flags.DEFINE_string(
  'workdir', None, 'Directory for checkpoints, metrics, results and plots.'
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
