"""The NTM copy task (Graves et al., 2014, Sec. 4.1): train, then cost vs length.

  python -m experiments.copy_task.main --workdir=runs/copy_ntm \
      [--config=experiments/copy_task/configs/ntm.py] [--config.num_updates=1000]
"""

from experiments.common import cli
from experiments.copy_task import train

if __name__ == '__main__':
  cli.run_experiment(
    'experiments.copy_task',
    train.train_and_evaluate,
    'ntm.py',
    'Directory for metrics, results and plots.',
  )
