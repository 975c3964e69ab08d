"""The bandit baselines of RL^2's Table 1, computed here (Duan et al., 2016).

  python -m experiments.rl2.baselines --out=results/meta_rl/rl2/baselines \
      [--num-tasks=2000] [--tune-tasks=500]

For k in {5, 10, 50} arms and n in {10, 100, 500} pulls: the average total reward
of one trial of random, Gittins-index, UCB1 and Thompson-sampling play on
``--num-tasks`` held-out bandits (the tasks RL^2's evaluation draws for the same
k), with standard errors over tasks. As in the paper, hyper-parameters are chosen
per setting by a grid search: UCB1's ``c`` over ``UCB1_C``, and the Gittins
index's discount over ``1 - 1 / (s n)`` for ``s`` in ``DISCOUNT_SCALES``, each on
``--tune-tasks`` other bandits (a disjoint seed); the paper instead chose among
approximations of the index (its Sec. 3.1).
"""

from __future__ import annotations

import argparse
import functools
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments.common.run_info import git_state, run_info
from experiments.common.workdir import prepare_workdir
from experiments.rl2 import train
from experiments.rl2.configs import default
from jmeta import rl
from jmeta.rl import bandit_baselines as bb
from jmeta.rl import gittins

ARMS = (5, 10, 50)
PULLS = (10, 100, 500)
UCB1_C = (0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
DISCOUNT_SCALES = (0.25, 0.5, 1.0, 2.0)
TUNE_SEED = 2_000_003


def ucb1_returns(c, tasks, key, pulls):
  policy = bb.BanditPolicy(
    'ucb1', lambda counts, t, k: bb.argmax_random_ties(bb.ucb1_scores(counts, t, c), k)
  )
  return bb.bandit_returns(policy, tasks, key, pulls)


def index_returns(table, tasks, key, pulls):
  return bb.bandit_returns(bb.index_policy(table), tasks, key, pulls)


def tuned(returns_fn, grid, tune_tasks, tasks, key, pulls):
  """The grid value (an array's leading index) of best mean return on
  ``tune_tasks``, and the returns with it on ``tasks``."""
  tuning = jax.jit(jax.vmap(lambda g, k: returns_fn(g, tune_tasks, k, pulls)))(
    grid, jax.random.split(key, len(grid))
  )
  means = np.asarray(jnp.mean(tuning, axis=1))
  best = int(np.argmax(means))
  returns = jax.jit(lambda g, k: returns_fn(g, tasks, k, pulls))(grid[best], key)
  return best, means, np.asarray(returns)


@functools.cache
def index_table(discount: float, pulls: int) -> np.ndarray:
  # The same tables serve every number of arms.
  return gittins.gittins_index_table(discount, pulls)


def one_setting(num_arms: int, pulls: int, num_tasks: int, tune_tasks: int) -> dict:
  env = rl.bernoulli_bandit(num_arms)
  config = default.get_config()
  config.eval.num_tasks = num_tasks
  tasks = train.eval_tasks(config, env)
  tune = rl.sample_tasks(env, jax.random.key(TUNE_SEED), tune_tasks)
  key = jax.random.fold_in(jax.random.key(config.eval.seed), 2)
  out = {'num_arms': num_arms, 'num_pulls': pulls}
  for name, policy in (
    ('random', bb.random_policy()),
    ('thompson', bb.thompson_sampling()),
  ):
    returns = jax.jit(lambda k, p=policy: bb.bandit_returns(p, tasks, k, pulls))(key)
    out[name] = train.summary(returns)
  c_grid = jnp.asarray(UCB1_C, jnp.float32)
  best, means, returns = tuned(ucb1_returns, c_grid, tune, tasks, key, pulls)
  out['ucb1'] = {
    **train.summary(returns),
    'c': UCB1_C[best],
    'tuning': dict(zip(map(str, UCB1_C), means.round(3).tolist())),
  }
  # Scales that give no discount in (0, 1) for a very short trial are skipped.
  discounts = [1.0 - 1.0 / (s * pulls) for s in DISCOUNT_SCALES if s * pulls > 1]
  tables = [index_table(d, pulls) for d in discounts]
  grid = jnp.asarray(np.nan_to_num(np.stack(tables), nan=-1.0), jnp.float32)
  best, means, returns = tuned(index_returns, grid, tune, tasks, key, pulls)
  out['gittins'] = {
    **train.summary(returns),
    'discount': discounts[best],
    'tuning': dict(zip((f'{d:.5g}' for d in discounts), means.round(3).tolist())),
  }
  return out


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--out', required=True, help='folder for results.json')
  parser.add_argument('--num-tasks', type=int, default=2000)
  parser.add_argument('--tune-tasks', type=int, default=500)
  parser.add_argument('--arms', type=int, nargs='+', default=list(ARMS))
  parser.add_argument('--pulls', type=int, nargs='+', default=list(PULLS))
  args = parser.parse_args(argv)
  out = prepare_workdir(args.out, ('results.json',))
  code = git_state()  # the code that runs, before anything else changes the tree
  start = time.perf_counter()
  cells = []
  for pulls in args.pulls:
    for num_arms in args.arms:
      cell = one_setting(num_arms, pulls, args.num_tasks, args.tune_tasks)
      cells.append(cell)
      print(json.dumps(cell), flush=True)
  results = {
    'run': {**run_info(), **code},
    'num_tasks': args.num_tasks,
    'eval_seed': default.get_config().eval.seed,
    'tune_tasks': args.tune_tasks,
    'ucb1_c_grid': list(UCB1_C),
    'discount_scales': list(DISCOUNT_SCALES),
    'seconds': round(time.perf_counter() - start, 1),
    'cells': cells,
  }
  (out / 'results.json').write_text(json.dumps(results, indent=2))
  print(f'wrote {out / "results.json"}')
  return 0


if __name__ == '__main__':
  raise SystemExit(main())
