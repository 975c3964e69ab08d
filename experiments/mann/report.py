"""Accuracy by instance of MANN and LSTM runs beside Santoro et al. (2016), Tables 1-2.

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
# Table 2: five-character string labels, "after 100000 episodes of training", by
# model and classes per episode. Transcribed from a secondary text's copy of the
# table (the paper's own text could not be read where this was written), which
# agrees with Table 1 above to the digit: check against arXiv:1605.06065.
PAPER_TABLE_2 = {
  ('lstm', 5): (0.0, 9.0, 14.2, 16.9, 21.8, 25.5),
  ('mann', 5): (0.0, 69.5, 80.4, 87.9, 88.4, 93.1),
  ('lstm', 15): (0.0, 2.2, 2.9, 4.3, 5.6, 12.7),
  ('mann', 15): (0.1, 62.6, 79.3, 86.6, 88.7, 95.3),
  ('ntm', 15): (0.0, 35.4, 61.2, 71.7, 77.7, 88.4),
}
PAPER = 'Santoro et al. (2016)'
LABELS = {'mann': 'MANN (LRUA)', 'lstm': 'LSTM', 'ntm': 'NTM'}
ORDINALS = {1: '1st', 2: '2nd', 3: '3rd'}


def label(model: str) -> str:
  return LABELS.get(model, model)


def run_labels(result: dict) -> str:
  """'one_hot' or 'string': the labels a run trained with (runs from before string
  labels existed are one-hot)."""
  return result['config']['data'].get('labels', 'one_hot')


def run_label(result: dict) -> str:
  """The run's row name: its model, and its labels when they are strings."""
  name = label(result['model'])
  return f'{name}, string labels' if run_labels(result) == 'string' else name


def paper_row(model: str, num_classes: int, labels: str) -> tuple[str, tuple] | None:
  """(where in the paper, its accuracies at ``TABLE_INSTANCES``) for a model
  trained on episodes of ``num_classes`` with ``labels``, or None if the paper has
  no such row."""
  if labels == 'string' and (model, num_classes) in PAPER_TABLE_2:
    return f'{PAPER}, Table 2, {num_classes} classes', PAPER_TABLE_2[model, num_classes]
  if labels == 'one_hot' and num_classes == 5 and model in PAPER_TABLE_1:
    return f'{PAPER}, Table 1', PAPER_TABLE_1[model]
  return None


def result_paper_row(result: dict) -> tuple[str, tuple] | None:
  return paper_row(result['model'], result['test']['num_classes'], run_labels(result))


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
  papers = []  # (model, name, paper row), once each
  for r in results:
    test = r['test']
    cells = [
      f'{100 * test["accuracy"][k - 1]:.1f} ± {100 * test["ci95"][k - 1]:.1f}'
      for k in TABLE_INSTANCES
    ]
    lines.append(
      f'| {run_label(r)} (this run) | '
      + ' | '.join(cells)
      + f' | {r["episodes_trained"]:,} | {duration(r["train_seconds_total"])} |'
    )
    row = result_paper_row(r)
    if row is not None and (r['model'], *row) not in papers:
      papers.append((r['model'], *row))
  for model, source, accuracies in papers:
    cells = [f'{a:.1f}' for a in accuracies]
    lines.append(
      f'| {label(model)} ({source}) | ' + ' | '.join(cells) + ' | 100,000 | – |'
    )
  lines.append('')
  for r in results:
    test, run = r['test'], r['run']
    lines.append(
      f'- {run_label(r)}: {test["episodes"]} fixed test episodes of '
      f'{test["num_classes"]} classes from the {test["characters"]} test characters; '
      f'± is a 95% confidence interval over episodes. {r["updates"]:,} updates of '
      f'{r["config"]["batch_size"]} episodes, {r["seconds_per_update"]:.3f} s per '
      f'update on {hardware_label(run)}, commit {run["git_commit"][:7]}'
      f'{" (dirty)" if run.get("git_dirty") else ""}. Command: `{run["command"]}`.'
    )
  return '\n'.join(lines) + '\n'


def plot_accuracy_by_instance(results: list[dict], path):
  """Test accuracy against the presentation of a class, each run beside the paper's
  row for it; returns the matplotlib Figure (saved to ``path``)."""
  # A Figure without pyplot: no global backend switch in the caller's process.
  from matplotlib.figure import Figure

  fig = Figure(figsize=(5.6, 3.8))
  ax = fig.subplots()
  for i, r in enumerate(results):
    mean = 100 * np.asarray(r['test']['accuracy'])
    ci = 100 * np.asarray(r['test']['ci95'])
    k = np.arange(1, len(mean) + 1)
    color = f'C{i}'
    ax.plot(k, mean, 'o-', ms=3, color=color, label=f'{run_label(r)} (this run)')
    ax.fill_between(k, mean - ci, mean + ci, color=color, alpha=0.2)
    row = result_paper_row(r)
    if row is not None:
      ax.plot(
        TABLE_INSTANCES,
        row[1],
        's--',
        ms=4,
        color=color,
        alpha=0.6,
        label=f'{run_label(r)} (paper)',
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
