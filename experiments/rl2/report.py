"""RL^2 and the bandit baselines in the format of Duan et al. (2016), Table 1.

  python -m experiments.rl2.report results/meta_rl/rl2

reads ``baselines/results.json`` (``python -m experiments.rl2.baselines``) and the
``results.json`` of each RL^2 run in the folder's other subfolders and of each
registered long run ``rl2_*`` beside it in ``../full`` (``experiments/runs.py``), and
prints the table (the README's block): for each setting the average total reward
(± standard error over held-out bandits) of each method, with the paper's number
beside it. A long run that has not finished is named in its row.
"""

from __future__ import annotations

import argparse
import json
import pathlib

from experiments.common.progress import duration
from experiments.common.run_info import hardware_label
from experiments.runs import RUN_FILE, config_from_command

ROOT = pathlib.Path(__file__).parents[2]
PAPER = 'Duan et al. (2016), Table 1'
# Table 1 of arXiv:1611.02779 (average total reward over 1,000 bandits), keyed by
# (n pulls, k arms): random, Gittins, TS, UCB1, RL^2. The table's OTS, epsilon-greedy
# and greedy columns are not computed here.
PAPER_TABLE_1 = {
  (10, 5): (5.0, 6.6, 5.7, 6.7, 6.7),
  (10, 10): (5.0, 6.6, 5.5, 6.7, 6.7),
  (10, 50): (5.1, 6.5, 5.2, 6.6, 6.8),
  (100, 5): (49.9, 78.3, 74.7, 78.0, 78.7),
  (100, 10): (49.9, 82.8, 76.7, 82.4, 83.5),
  (100, 50): (49.8, 85.2, 64.5, 84.3, 84.9),
  (500, 5): (249.8, 405.8, 402.0, 405.8, 401.6),
  (500, 10): (249.0, 437.8, 429.5, 437.1, 432.5),
  (500, 50): (249.6, 463.7, 427.2, 457.6, 438.9),
}
METHODS = (
  ('random', 'Random'),
  ('gittins', 'Gittins'),
  ('thompson', 'TS'),
  ('ucb1', 'UCB1'),
)


LONG_RUN_PREFIX = 'rl2_'


def _registered_config(workdir: pathlib.Path) -> dict | None:
  """The config a run in ``workdir`` trains with: its ``config.json`` once started,
  else the config file its ``RUN.json`` command names."""
  if (workdir / 'config.json').exists():
    return json.loads((workdir / 'config.json').read_text())
  if not (workdir / RUN_FILE).exists():
    return None
  command = json.loads((workdir / RUN_FILE).read_text())['command']
  config = config_from_command(command, ROOT)
  return None if config is None else config.to_dict()


def folder_runs(folder: str | pathlib.Path) -> list[dict]:
  """The ``results.json`` of each RL^2 run in ``folder``'s subfolders, in Table 1's
  order."""
  runs = [
    json.loads(p.read_text())
    for p in pathlib.Path(folder).glob('*/results.json')
    if p.parent.name != 'baselines'
  ]
  return sorted(runs, key=lambda r: (r['num_pulls'], r['num_arms']))


def unfinished_long_run(workdir: pathlib.Path) -> dict | None:
  """A run in ``workdir`` without results: its setting, workdir and whether it
  has started; None if ``workdir`` holds no run."""
  config = _registered_config(workdir)
  if (workdir / 'results.json').exists() or config is None:
    return None
  return {
    'num_pulls': config['num_pulls'],
    'num_arms': config['num_arms'],
    'unfinished': str(pathlib.Path(*workdir.parts[-4:])),
    'started': (workdir / 'config.json').exists(),
  }


def load(
  folder: str | pathlib.Path, long_runs: str | pathlib.Path | None = None
) -> tuple[dict, list[dict]]:
  """The baselines' results and the RL^2 runs' results, in Table 1's order.

  ``long_runs`` (default ``folder/../full``) holds the registered runs ``rl2_*``;
  one without results yet appears as ``unfinished_long_run`` gives it.
  """
  folder = pathlib.Path(folder)
  long_runs = folder.parent / 'full' if long_runs is None else pathlib.Path(long_runs)
  path = folder / 'baselines' / 'results.json'
  if not path.exists():
    raise FileNotFoundError(
      f'{path} does not exist: run python -m experiments.rl2.baselines '
      f'--out={folder / "baselines"} first.'
    )
  baselines = json.loads(path.read_text())
  runs = folder_runs(folder)
  for workdir in sorted(long_runs.glob(f'{LONG_RUN_PREFIX}*/')):
    if (workdir / 'results.json').exists():
      runs.append(json.loads((workdir / 'results.json').read_text()))
    elif (pending := unfinished_long_run(workdir)) is not None:
      runs.append(pending)
  return baselines, sorted(runs, key=lambda r: (r['num_pulls'], r['num_arms']))


def cell(summary: dict) -> str:
  return f'{summary["mean"]:.2f} ± {summary["stderr"]:.2f}'


def budget(run: dict) -> str:
  value = ', value GRU' if run['config'].get('separate_value') else ''
  return (
    f'{run["iterations"]:,} iterations x {run["config"]["num_trials"]} trials'
    f'{value}, {duration(run["train_seconds_total"])}'
  )


def evaluated_on(run: dict, baselines: dict) -> str:
  count = run['eval']['rl2']['num_tasks']
  if count == baselines['num_tasks'] and run['eval']['seed'] == baselines.get(
    'eval_seed'
  ):
    return f"the baselines' {count:,} bandits"
  return f'{count:,} held-out bandits'


def continued(run: dict) -> str:
  step = run.get('resumed_from_iteration', 0)
  if not step:
    return ''
  return (
    f', continuing from its checkpoint at iteration {step:,} (its `timing.jsonl` '
    "names each stretch's commit)"
  )


def rl2_runs_table(runs: list[dict]) -> str:
  """One row per RL^2 run: setting, return, budget, hardware."""
  lines = [
    '| setup | RL² (this run) | RL² (paper) | budget | hardware | commit |',
    '| --- | --- | --- | --- | --- | --- |',
  ]
  for r in runs:
    n, k = r['num_pulls'], r['num_arms']
    paper = PAPER_TABLE_1.get((n, k))
    lines.append(
      f'| n = {n}, k = {k} | {cell(r["eval"]["rl2"])} | '
      f'{paper[-1] if paper else "–"} | {budget(r)} | {hardware_label(r["run"])} | '
      f'{r["run"]["git_commit"][:7]}{" (dirty)" if r["run"].get("git_dirty") else ""} |'
    )
  return '\n'.join(lines) + '\n'


def results_table(baselines: dict, runs: list[dict]) -> str:
  """Table 1's layout: a row per (n, k), ours then the paper's for each method."""
  by_setting = {(r['num_pulls'], r['num_arms']): r for r in runs}
  head = ' | '.join(f'{label} | paper' for _, label in METHODS)
  lines = [
    f'| setup | {head} | RL² | paper | RL² budget |',
    '|' + ' --- |' * (2 * len(METHODS) + 4),
  ]
  for c in baselines['cells']:
    n, k = c['num_pulls'], c['num_arms']
    paper = PAPER_TABLE_1.get((n, k), ('–',) * 5)
    cells = [f'{cell(c[key])} | {p}' for (key, _), p in zip(METHODS, paper)]
    run = by_setting.get((n, k))
    if run is None:
      rl2 = f'not run | {paper[-1]} | –'
    elif 'unfinished' in run:
      rl2 = f'not finished | {paper[-1]} | see below'
    else:
      rl2 = f'{cell(run["eval"]["rl2"])} | {paper[-1]} | {budget(run)}'
    lines.append(f'| n = {n}, k = {k} | ' + ' | '.join(cells) + f' | {rl2} |')
  lines.append('')
  hyper = ', '.join(
    f'n = {c["num_pulls"]}, k = {c["num_arms"]}: c = {c["ucb1"]["c"]:g}, '
    f'discount {c["gittins"]["discount"]:.4g}'
    for c in baselines['cells']
  )
  run = baselines['run']
  lines.append(
    f'- Baselines: {baselines["num_tasks"]:,} held-out bandits per setting (arm '
    f"means from Uniform[0, 1]), ± one standard error over bandits; UCB1's c and "
    f'the Gittins discount chosen per setting on {baselines["tune_tasks"]} other '
    f'bandits ({hyper}). Computed in {duration(baselines["seconds"])} on '
    f'{hardware_label(run)}, commit {run["git_commit"][:7]}'
    f'{" (dirty)" if run.get("git_dirty") else ""}. Command: `{run["command"]}`.'
  )
  for r in runs:
    if 'unfinished' in r:
      lines.append(
        f'- RL², n = {r["num_pulls"]}, k = {r["num_arms"]}: a registered long run in '
        f'`{r["unfinished"]}`, '
        + (
          'not finished; `python -m experiments.runs status` shows how far it is.'
          if r['started']
          else 'not started.'
        )
      )
      continue
    lines.append(
      f'- RL², n = {r["num_pulls"]}, k = {r["num_arms"]}: {budget(r)} of training '
      f'({r["train_seconds_total"] / r["iterations"]:.2f} s per iteration on '
      f'{hardware_label(r["run"])}, '
      f'commit {r["run"]["git_commit"][:7]}'
      f'{" (dirty)" if r["run"].get("git_dirty") else ""}), evaluated on '
      f'{evaluated_on(r, baselines)}. Command: `{r["run"]["command"]}`'
      f'{continued(r)}.'
    )
  lines.append(
    f'- Paper columns: {PAPER} (1,000 bandits per setting). Times are on a shared, '
    'loaded CPU.'
  )
  return '\n'.join(lines) + '\n'


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('folder', nargs='?', default='results/meta_rl/rl2')
  parser.add_argument(
    '--runs-only',
    action='store_true',
    help="one row per RL^2 run in the folder's subfolders, without the baselines",
  )
  args = parser.parse_args(argv)
  if args.runs_only:
    print(rl2_runs_table(folder_runs(args.folder)), end='')
  else:
    print(results_table(*load(args.folder)), end='')
  return 0


if __name__ == '__main__':
  raise SystemExit(main())
