"""One-shot Omniglot with a MANN or an LSTM (Santoro et al., 2016).

  python -m experiments.mann.main --workdir=runs/mann \
      [--config=experiments/mann/configs/default.py] [--config.train_episodes=20000]
  python -m experiments.mann.main --workdir=runs/mann_lstm \
      --config=experiments/mann/configs/lstm.py

Re-running with the same --workdir resumes from its latest checkpoint.
"""

from experiments.common import cli
from experiments.mann import train

if __name__ == '__main__':
  cli.run_experiment('experiments.mann', train.train_and_evaluate, 'default.py')
