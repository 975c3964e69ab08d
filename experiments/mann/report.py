"""Accuracy by instance of MANN and LSTM runs beside Santoro et al. (2016), Table 1.

  python -m experiments.mann.report runs/mann runs/mann_lstm [--out=runs/mann_report]

reads each workdir's ``results.json`` and writes ``results.md`` (one row per run
and the paper's row for its model) and ``accuracy_by_instance.png`` to ``--out``;
without ``--out`` it prints the table (the README's block).
"""

from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np

from experiments.common.progress import duration
from experiments.common.run_info import hardware_label
from experiments.common.workdir import prepare_workdir

# The presentations Table 1 reports, and its test accuracies (%) with one-hot labels
# and five classes per episode.
TABLE_INSTANCES = (1, 2, 3, 4, 5, 10)
PAPER_TABLE_1 = {
  'mann': (36.4, 82.8, 91.0, 92.6, 94.9, 98.1),
  'lstm': (24.4, 49.5, 55.3, 61.0, 63.6, 62.5),
}
PAPER = 'Santoro et al. (2016), Table 1'
LABELS = {'mann': 'MANN (LRUA)', 'lstm': 'LSTM', 'ntm': 'NTM'}
ORDINALS = {1: '1st', 2: '2nd', 3: '3rd'}


def label(model: str) -> str:
  return LABELS.get(model, model)


def ordinal(k: int) -> str:
  return ORDINALS.get(k, f'{k}th')


def load_results(workdirs) -> list[dict]:
  """The ``results.json`` of each workdir, in order."""
  results = []
  for workdir in workdirs:
    path = pathlib.Path(workdir) / 'results.json'
    if not path.exists():
      raise FileNotFoundError(
        f'{path} does not exist: {workdir} holds no finished MANN run.'
      )
    results.append(json.loads(path.read_text()))
  return results


def results_table(results: list[dict]) -> str:
  """A markdown table: each run's test accuracy by instance (%, ± 95% CI) and, once
  per model, the paper's."""
  head = ' | '.join(ordinal(k) for k in TABLE_INSTANCES)
  lines = [
    f'| model | {head} | episodes trained | train time |',
    '|' + ' --- |' * (len(TABLE_INSTANCES) + 3),
  ]
  papers = []
  for r in results:
    test = r['test']
    cells = [
      f'{100 * test["accuracy"][k - 1]:.1f} ± {100 * test["ci95"][k - 1]:.1f}'
      for k in TABLE_INSTANCES
    ]
    lines.append(
      f'| {label(r["model"])} (this run) | '
      + ' | '.join(cells)
      + f' | {r["episodes_trained"]:,} | {duration(r["train_seconds_total"])} |'
    )
    if r['model'] in PAPER_TABLE_1 and r['model'] not in papers:
      papers.append(r['model'])
  for model in papers:
    cells = [f'{a:.1f}' for a in PAPER_TABLE_1[model]]
    lines.append(
      f'| {label(model)} ({PAPER}) | ' + ' | '.join(cells) + ' | 100,000 | – |'
    )
  lines.append('')
  for r in results:
    test, run = r['test'], r['run']
    lines.append(
      f'- {label(r["model"])}: {test["episodes"]} fixed test episodes of '
      f'{test["num_classes"]} classes from the {test["characters"]} test characters; '
      f'± is a 95% confidence interval over episodes. {r["updates"]:,} updates of '
      f'{r["config"]["batch_size"]} episodes, {r["seconds_per_update"]:.3f} s per '
      f'update on {hardware_label(run)}, commit {run["git_commit"][:7]}'
      f'{" (dirty)" if run.get("git_dirty") else ""}. Command: `{run["command"]}`.'
    )
  return '\n'.join(lines) + '\n'


def plot_accuracy_by_instance(results: list[dict], path):
  """Test accuracy against the presentation of a class, each run beside the paper's
  Table 1; returns the matplotlib Figure (saved to ``path``)."""
  # A Figure without pyplot: no global backend switch in the caller's process.
  from matplotlib.figure import Figure

  fig = Figure(figsize=(5.6, 3.8))
  ax = fig.subplots()
  for i, r in enumerate(results):
    mean = 100 * np.asarray(r['test']['accuracy'])
    ci = 100 * np.asarray(r['test']['ci95'])
    k = np.arange(1, len(mean) + 1)
    color = f'C{i}'
    ax.plot(k, mean, 'o-', ms=3, color=color, label=f'{label(r["model"])} (this run)')
    ax.fill_between(k, mean - ci, mean + ci, color=color, alpha=0.2)
    if r['model'] in PAPER_TABLE_1:
      ax.plot(
        TABLE_INSTANCES,
        PAPER_TABLE_1[r['model']],
        's--',
        ms=4,
        color=color,
        alpha=0.6,
        label=f'{label(r["model"])} (paper)',
      )
  classes = sorted({r['test']['num_classes'] for r in results})
  ax.set(
    xlabel='presentation of the class within the episode',
    ylabel='test accuracy (%)',
    ylim=(0, 100),
    title=f'one-shot Omniglot, {"/".join(map(str, classes))} classes per episode',
  )
  ax.set_xticks(range(1, max(len(r['test']['accuracy']) for r in results) + 1))
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  return fig


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('workdirs', nargs='+', help='finished runs (their results.json)')
  parser.add_argument('--out', help='folder for the table and plot (else: print)')
  args = parser.parse_args(argv)
  results = load_results(args.workdirs)
  if args.out is None:
    print(results_table(results), end='')
    return 0
  out = prepare_workdir(args.out, ('results.md', 'accuracy_by_instance.png'))
  (out / 'results.md').write_text(results_table(results))
  plot_accuracy_by_instance(results, out / 'accuracy_by_instance.png')
  print(f'wrote {out / "results.md"} and {out / "accuracy_by_instance.png"}')
  return 0


if __name__ == '__main__':
  raise SystemExit(main())
