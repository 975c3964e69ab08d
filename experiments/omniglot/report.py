"""Markdown table of committed Omniglot results beside the papers' numbers.

python -m experiments.omniglot.report results/omniglot
"""

from __future__ import annotations

import json
import pathlib
import sys

from experiments.common.run_info import hardware_label

# Test accuracy (%) reported by the papers, per setting.
PAPER = {
  'maml': (
    {'5w1s': 98.7, '5w5s': 99.9, '20w1s': 95.8, '20w5s': 98.9},
    'Finn et al. (2017)',
  ),
  'fomaml': (
    {'5w1s': 98.3, '5w5s': 99.2, '20w1s': 89.4, '20w5s': 97.9},
    'Nichol et al. (2018)',
  ),
  'reptile': (
    {'5w1s': 97.68, '5w5s': 99.48, '20w1s': 89.43, '20w5s': 97.12},
    'Nichol et al. (2018), transductive',
  ),
}


def table(results_dir: str | pathlib.Path) -> str:
  rows = [
    '| algorithm | setting | ours (600 episodes) | ours (1000 episodes) | paper | '
    'iterations (of full) | hardware | train time | command |',
    '|' + ' --- |' * 9,
  ]
  for path in sorted(pathlib.Path(results_dir).glob('*/test_step*.json')):
    r = json.loads(path.read_text())
    config, test = r['config'], r['test']
    paper, _ = PAPER[config['algorithm']]

    def cell(n, test=test):
      t = test.get(str(n))
      return f'{100 * t["accuracy"]:.2f} ± {100 * t["ci95"]:.2f}' if t else '–'

    full = {'maml': 60_000, 'fomaml': 60_000, 'reptile': 100_000}[config['algorithm']]
    rows.append(
      f'| {config["algorithm"]} | {config["setting"]} | {cell(600)} | {cell(1000)} | '
      f'{paper[config["setting"]]} | {r["iterations"]:,} of {full:,} | '
      f'{hardware_label(r["run"])} | {r["train_seconds_total"]:.0f} s | '
      f'`{r["run"]["command"]}` |'
    )
  return '\n'.join(rows) + '\n'


if __name__ == '__main__':
  print(table(sys.argv[1] if len(sys.argv) > 1 else 'results/omniglot'), end='')
