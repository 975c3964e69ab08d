"""Predictive mean +- 2 standard deviations on a few held-out tasks, as in the
neural-process papers' figures (Garnelo et al., 2018a, Fig. 2; Kim et al., 2019,
Fig. 1), one column per run.

  python -m experiments.neural_processes.plot OUT.png results/neural_processes/cnp_gp_random \
      results/neural_processes/np_gp_random results/neural_processes/anp_gp_random

reads each workdir's ``predictions.json`` (written by the run at its end);

  python -m experiments.neural_processes.plot --curves OUT.png WORKDIR...

plots their training curves from ``metrics.jsonl``.
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np

LABELS = {'cnp': 'CNP', 'np': 'NP', 'anp': 'ANP', 'maml': 'MAML'}


def plot_predictions(runs: list[dict], out: str | pathlib.Path) -> None:
  """Rows: tasks; columns: runs. Black: the truth (the GP posterior's mean +- 2 sd
  given the same context, dashed, or the sinusoid); blue: the model's predictive
  mean +- 2 sd; thin lines: the means given single draws of z; dots: the context."""
  # A Figure without pyplot: no global backend switch in the caller's process.
  from matplotlib.figure import Figure

  if not runs:
    raise ValueError('give at least one run to plot.')
  rows = min(len(r['tasks']) for r in runs)
  fig = Figure(figsize=(3.2 * len(runs), 2.4 * rows))
  axes = np.asarray(fig.subplots(rows, len(runs), squeeze=False))
  for col, run in enumerate(runs):
    for row in range(rows):
      ax, task = axes[row, col], run['tasks'][row]
      grid = np.asarray(task['grid'])
      truth = np.asarray(task['truth_mean'])
      ax.plot(grid, truth, 'k', lw=1)
      if 'truth_std' in task:
        sd = np.asarray(task['truth_std'])
        ax.plot(grid, truth + 2 * sd, 'k--', lw=0.6)
        ax.plot(grid, truth - 2 * sd, 'k--', lw=0.6)
      mean = np.asarray(task['mean'])
      ax.plot(grid, mean, 'b', lw=1.2)
      if 'std' in task:
        sd = np.asarray(task['std'])
        ax.fill_between(grid, mean - 2 * sd, mean + 2 * sd, color='b', alpha=0.2)
      for sample in task.get('samples', []):
        ax.plot(grid, sample, 'b', lw=0.5, alpha=0.6)
      ax.plot(task['context_x'], task['context_y'], 'ko', ms=3)
      ax.tick_params(labelsize=6)
      if row == 0:
        ax.set_title(
          f'{LABELS.get(run["model"], run["model"])}, {run["family"]}, '
          f'{len(task["context_x"])} context points',
          fontsize=7,
        )
  fig.tight_layout()
  fig.savefig(out, dpi=110)


def plot_train_curves(workdirs, out: str | pathlib.Path, window: int = 5) -> None:
  """The training log-likelihood per target point (the ELBO's reconstruction term
  for a latent model, the targets including the context) and the KL term against
  the update, from each workdir's ``metrics.jsonl``, smoothed over ``window`` logs."""
  from matplotlib.figure import Figure

  fig = Figure(figsize=(8, 3.2))
  axes = fig.subplots(1, 2)
  for i, w in enumerate(workdirs):
    path = pathlib.Path(w) / 'metrics.jsonl'
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    steps = np.array([r['step'] for r in rows])
    for ax, key in zip(axes, ('train_log_likelihood', 'train_kl')):
      if key not in rows[0]:
        continue
      values = np.array([r[key] for r in rows])
      width = min(window, len(values))
      smooth = np.convolve(values, np.ones(width) / width, mode='valid')
      ax.plot(steps[width - 1 :], smooth, color=f'C{i}', label=pathlib.Path(w).name)
  axes[0].set(xlabel='update', ylabel='train log-likelihood per target')
  axes[1].set(xlabel='update', ylabel='train KL(q(z|T) || q(z|C))')
  axes[0].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(out, dpi=110)


def plot_runs(out: str | pathlib.Path, workdirs: list[str | pathlib.Path]) -> None:
  """Writes the plot of the workdirs' ``predictions.json`` to ``out``."""
  if not workdirs:
    raise ValueError('give at least one workdir to plot.')
  runs = []
  for w in workdirs:
    path = pathlib.Path(w) / 'predictions.json'
    if not path.exists():
      raise FileNotFoundError(f'{path} does not exist: {w} holds no finished run.')
    runs.append(json.loads(path.read_text()))
  plot_predictions(runs, out)


if __name__ == '__main__':
  if len(sys.argv) < 3:
    sys.exit(__doc__)
  if sys.argv[1] == '--curves':
    plot_train_curves(sys.argv[3:], sys.argv[2])
  else:
    plot_runs(sys.argv[1], sys.argv[2:])
