"""Neural processes (CNP, NP, ANP) and MAML on GP and sinusoid function regression.

  python -m experiments.neural_processes.main --workdir=runs/np/anp_gp_random \
      --config=experiments/neural_processes/configs/anp.py:gp_random \
      [--config.num_iterations=6000]

A stopped run resumes from its workdir's latest checkpoint when started again with
the same command.
"""

import pathlib

from experiments.common import cli
from experiments.neural_processes import train

_WORKDIR = cli.define_flags(
  str(pathlib.Path(__file__).parent / 'configs' / 'anp.py'),
  'Directory for checkpoints, metrics, results and plots.',
)

if __name__ == '__main__':
  cli.run(
    'python -m experiments.neural_processes.main',
    cli.train_main(train.train_and_evaluate, _WORKDIR),
    _WORKDIR,
  )
