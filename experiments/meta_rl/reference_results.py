"""The reference code's own MAML-RL results, as a JSON file beside a run.

  python -m experiments.meta_rl.reference_results --repo=PATH/maml_rl \\
      --family=cheetah --out=results/meta_rl/full/RUN/reference_results.json

reads ``icml/icml_<family>_results_<policy>.pkl`` from a clone of cbfinn/maml_rl
(Finn et al., 2017; the numbers behind the paper's Figure 5, which
``icml/make_<family>_plots.py`` plots) and writes, per policy, the mean over the test
tasks of ``task_avg_returns`` after each number of gradient steps, with the commit
it was read from. ``family`` is ``cheetah`` (goal velocity), ``cheetahdirec``,
``ant`` or ``antdirec``.
"""

from __future__ import annotations

import argparse
import io
import json
import pathlib
import pickle
import subprocess

import numpy as np

POLICIES = ('maml', 'pretrain', 'random', 'oracle')
FAMILIES = ('cheetah', 'cheetahdirec', 'ant', 'antdirec')


def _git(repo: str, *args: str) -> bytes:
  return subprocess.run(
    ['git', '-C', repo, *args], capture_output=True, check=True
  ).stdout


def reference_results(repo: str, family: str) -> dict:
  """Per policy, the mean return over the tasks after 0, 1, ... steps."""
  if family not in FAMILIES:
    raise ValueError(f'unknown family {family!r}; expected one of {FAMILIES}.')
  commit = _git(repo, 'rev-parse', 'HEAD').decode().strip()
  policies = {}
  for policy in POLICIES:
    path = f'icml/icml_{family}_results_{policy}.pkl'
    # Python 2 pickles of lists of floats.
    data = pickle.load(
      io.BytesIO(_git(repo, 'show', f'HEAD:{path}')), encoding='latin1'
    )
    returns = np.asarray(data['task_avg_returns'], np.float64)  # (steps, tasks)
    policies[policy] = {
      'mean': [round(float(x), 2) for x in returns.mean(axis=1)],
      'num_tasks': int(returns.shape[1]),
      'file': path,
    }
  return {'source': 'github.com/cbfinn/maml_rl', 'commit': commit, 'policies': policies}


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--repo', required=True, help='a clone of cbfinn/maml_rl')
  parser.add_argument('--family', default='cheetah', choices=FAMILIES)
  parser.add_argument('--out', required=True)
  args = parser.parse_args(argv)
  out = pathlib.Path(args.out)
  if out.exists():
    raise FileExistsError(f'{out} exists; remove it first to write it again.')
  results = reference_results(args.repo, args.family)
  out.write_text(json.dumps(results, indent=2) + '\n')
  print(json.dumps({k: v['mean'] for k, v in results['policies'].items()}))
  return 0


if __name__ == '__main__':
  raise SystemExit(main())
