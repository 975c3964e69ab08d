"""RL^2 on Bernoulli bandits (Duan et al., 2016, Sec. 3.1): PPO-train a GRU policy
over trials of n pulls, then its average total reward on held-out bandits.

  python -m experiments.rl2.main --workdir=results/meta_rl/rl2/k5_n10 \
      [--config=experiments/rl2/configs/default.py] [--config.num_iterations=100]

Re-running with the same --workdir resumes from its latest checkpoint. The
baselines of Table 1 are ``python -m experiments.rl2.baselines``; the table of
both is ``python -m experiments.rl2.report``.
"""

from experiments.common import cli
from experiments.rl2 import train

if __name__ == '__main__':
  cli.run_experiment('experiments.rl2', train.train_and_evaluate, 'default.py')
