"""Markdown table of committed copy-task runs: cost per sequence against length.

python -m experiments.copy_task.report results/copy_task
"""

from __future__ import annotations

import json
import pathlib
import sys

from experiments.common.run_info import hardware_label
from experiments.copy_task.train import LABELS


def table(results_dir: str | pathlib.Path) -> str:
  """One row per run (``*/results.json``): cost in bits at each evaluated length,
  trained lengths marked, then size, training, hardware and command."""
  runs = sorted(
    (
      json.loads(p.read_text())
      for p in pathlib.Path(results_dir).glob('*/results.json')
    ),
    key=lambda r: r['config']['model'] != 'ntm',
  )
  if not runs:
    raise ValueError(f'no */results.json under {results_dir}.')
  lengths = runs[0]['eval']['lengths']
  trained = range(runs[0]['config']['min_length'], runs[0]['config']['max_length'] + 1)
  heads = [f'{n}{" (trained)" if n in trained else ""}' for n in lengths]
  rows = [
    '| model | ' + ' | '.join(heads) + ' | parameters | sequences | train time '
    '| hardware | command |',
    '|' + ' --- |' * (len(lengths) + 6),
  ]
  for r in runs:
    if r['eval']['lengths'] != lengths:
      raise ValueError('the runs were evaluated at different lengths.')
    ev = r['eval']
    cells = [
      f'{m:.2f} ± {c:.2f}' for m, c in zip(ev['cost_bits_mean'], ev['cost_bits_ci95'])
    ]
    name = r['config']['model']
    rows.append(
      f'| {LABELS.get(name, name)} | '
      + ' | '.join(cells)
      + f' | {r["parameters"]:,} | {r["train"]["sequences"]:,} | '
      f'{r["train"]["seconds"] / 60:.0f} min | {hardware_label(r["run"])} | '
      f'`{r["run"]["command"]}` |'
    )
  return '\n'.join(rows) + '\n'


if __name__ == '__main__':
  print(table(sys.argv[1] if len(sys.argv) > 1 else 'results/copy_task'), end='')
