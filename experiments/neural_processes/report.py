"""Markdown tables of committed neural-process runs, one per task family.

  python -m experiments.neural_processes.report results/neural_processes
  python -m experiments.neural_processes.report results/neural_processes/full

reads every ``*/results.json`` under the folder and prints, per family, the
held-out log-likelihood per target point (and, on the sinusoid, the MSE) against
the number of context points, each row with its CPU budget, train time and
command; on a GP family also the exact GP posterior's on the same tasks.
"""

from __future__ import annotations

import json
import pathlib
import sys

from experiments.common.progress import duration
from experiments.common.run_info import hardware_label

LABELS = {'cnp': 'CNP', 'np': 'NP', 'anp': 'ANP', 'maml': 'MAML'}
ORDER = ('cnp', 'np', 'anp', 'maml')
FAMILIES = {
  'gp_random': 'GP, RBF kernel with random length scale ~ U[0.1, 0.6] and signal '
  'std ~ U[0.1, 1] per task (the ANP notebook)',
  'gp_fixed': 'GP, RBF kernel with fixed length scale 0.4 and signal std 1 (the '
  'CNP notebook)',
  'sinusoid': 'sinusoid (jmeta.sinusoid_tasks: amplitude ~ U[0.1, 5], phase ~ '
  'U[0, pi], x ~ U[-5, 5], noiseless)',
}


def load_runs(results_dir: str | pathlib.Path) -> list[dict]:
  runs = [
    json.loads(p.read_text())
    for p in sorted(pathlib.Path(results_dir).glob('*/results.json'))
  ]
  if not runs:
    raise ValueError(f'no */results.json under {results_dir}.')
  return runs


def budget(run: dict) -> str:
  if run['iterations'] >= run['paper_iterations']:
    return f"the paper's {run['paper_iterations']:,} iterations"
  return (
    f"CPU budget: {run['iterations']:,} of the paper's "
    f'{run["paper_iterations"]:,} iterations'
  )


def cells(metric: list[dict], digits: int = 2) -> list[str]:
  return [f'{m["mean"]:.{digits}f} ± {m["ci95"]:.{digits}f}' for m in metric]


def row(name: str, values: list[str], run: dict | None) -> str:
  tail = (
    [budget(run), duration(run['train_seconds_total']), f'`{run["run"]["command"]}`']
    if run
    else ['–', '–', '–']
  )
  return '| ' + ' | '.join([name, *values, *tail]) + ' |'


def family_table(family: str, runs: list[dict]) -> str:
  """The table of one family's runs (all evaluated on the same held-out tasks)."""
  runs = sorted(runs, key=lambda r: ORDER.index(r['model']))
  first = runs[0]['eval']
  for r in runs:
    if r['eval']['checksum'] != first['checksum']:
      raise ValueError(
        f'the {family} runs were evaluated on different tasks (checksums '
        f'{first["checksum"]} and {r["eval"]["checksum"]}); give them one config.eval.'
      )
  sizes = first['context_sizes']
  head = ' | '.join(f'{n} context' for n in sizes)
  lines = [
    f'**{FAMILIES.get(family, family)}.** {first["tasks"]} held-out tasks, '
    f'{first["targets"]} target points each (never context points).',
    '',
    f'| log-likelihood per target point | {head} | iterations | train time | command |',
    '|' + ' --- |' * (len(sizes) + 4),
  ]
  processes = [r for r in runs if r['model'] != 'maml']
  for r in processes:
    m, name = r['eval']['metrics'], LABELS[r['model']]
    if r['model'] == 'cnp':
      lines.append(row(name, cells(m['log_likelihood']), r))
    else:
      samples = r['config']['eval']['num_samples']
      lines.append(row(f'{name}, joint ({samples} z)', cells(m['log_likelihood']), r))
  for r in processes:
    if r['model'] != 'cnp':
      m, name = r['eval']['metrics'], LABELS[r['model']]
      lines.append(
        row(f'{name}, z = mean of q(z \\| C)', cells(m['predict_log_likelihood']), r)
      )
  oracle = next((r for r in runs if 'gp_marginal' in r['eval']['metrics']), None)
  if oracle:
    m = oracle['eval']['metrics']
    lines.append(row('exact GP posterior, per target', cells(m['gp_marginal']), None))
    lines.append(row('exact GP posterior, joint', cells(m['gp_joint']), None))
  if family == 'sinusoid':
    lines += [
      '',
      f'| MSE of the prediction | {head} | iterations | train time | command |',
      '|' + ' --- |' * (len(sizes) + 4),
    ]
    for r in runs:
      name = LABELS[r['model']]
      if r['model'] == 'maml':
        steps = r['config']['model']['test_steps']
        name = f'MAML, {steps} SGD steps on the context'
      else:
        name = f'{name} predictive mean'
      lines.append(row(name, cells(r['eval']['metrics']['mse'], 3), r))
  hardware = sorted({hardware_label(r['run']) for r in runs})
  lines += ['', f'Hardware: {", ".join(hardware)}; ± is a 95% interval over tasks.']
  return '\n'.join(lines) + '\n'


def tables(results_dir: str | pathlib.Path) -> str:
  """Every family's table, in the order of ``FAMILIES``."""
  by_family: dict[str, list[dict]] = {}
  for r in load_runs(results_dir):
    by_family.setdefault(r['family'], []).append(r)
  order = [f for f in FAMILIES if f in by_family] + sorted(
    set(by_family) - set(FAMILIES)
  )
  return '\n'.join(family_table(f, by_family[f]) for f in order)


if __name__ == '__main__':
  print(
    tables(sys.argv[1] if len(sys.argv) > 1 else 'results/neural_processes'), end=''
  )
