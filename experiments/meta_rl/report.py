"""Tables and plots of MAML-RL 2D-navigation runs.

python -m experiments.meta_rl.report results/meta_rl [results/meta_rl/returns.png]
python -m experiments.meta_rl.report --cosines results/meta_rl/cosines

Runs of the same seed share their initial policy and held-out goals, so the random
initialisation's row and the goal-seeking controller's appear once, from the first
run.
"""

from __future__ import annotations

import json
import pathlib
import sys

from experiments.common.run_info import hardware_label

ROWS = (
  ('maml', 'MAML-RL ({estimator}, {outer})'),
  ('random_init', 'random init, same adaptation'),
)


def _fields(results: dict) -> dict:
  # Runs from before config.outer existed trained with Adam.
  return {'outer': 'adam', **results['config']}


def load_runs(root: str | pathlib.Path) -> list[dict]:
  """Every ``*/results.json`` under ``root``, each with ``stopped``: whether a
  stretch of its training was cut short (``"stopped"`` in its ``timing.jsonl``)."""
  runs = []
  for path in sorted(pathlib.Path(root).glob('*/results.json')):
    timing = path.parent / 'timing.jsonl'
    lines = timing.read_text().splitlines() if timing.exists() else []
    stopped = any(json.loads(line).get('stopped') for line in lines if line.strip())
    runs.append({**json.loads(path.read_text()), 'stopped': stopped})
  return runs


def results_table(all_results: list[dict]) -> str:
  """Mean return (95% CI over held-out goals) after each number of steps; a run
  whose training was cut short says so beside its meta-iterations."""
  steps = all_results[0]['eval']['steps']
  rows = [
    '| policy | '
    + ' | '.join(f'{s} step{"s" if s != 1 else ""}' for s in steps)
    + ' | meta-iterations | train time | hardware |',
    '|' + ' --- |' * (len(steps) + 4),
  ]
  for index, r in enumerate(all_results):
    ev = r['eval']
    time = f'{r["train_seconds_total"] / 60:.0f} min'
    for key, label in ROWS if index == 0 else ROWS[:1]:
      cells = [f'{m:.1f} ± {c:.1f}' for m, c in zip(ev[key]['mean'], ev[key]['ci95'])]
      rows.append(
        f'| {label.format(**_fields(r))} | '
        + ' | '.join(cells)
        + (
          f' | {r["iterations"]}{" (stopped)" if r.get("stopped") else ""}'
          f' | {time} | {hardware_label(r["run"])} |'
          if key == 'maml'
          else ' | 0 | - | - |'
        )
      )
  oracle = all_results[0]['eval'].get('goal_seeking_controller')
  if oracle is not None:  # 2D navigation's baseline that sees the goal
    cell = f'{oracle["mean"][0]:.1f} ± {oracle["ci95"][0]:.1f}'
    rows.append(
      '| goal-seeking controller (sees the goal) | '
      + ' | '.join([cell] * len(steps))
      + ' | - | - | - |'
    )
  return '\n'.join(rows) + '\n'


def plot_returns(all_results: list[dict], path: str | pathlib.Path) -> None:
  """Return against policy-gradient steps, one curve per policy and run."""
  from matplotlib.figure import Figure

  fig = Figure(figsize=(5.5, 3.8))
  ax = fig.subplots()
  for index, r in enumerate(all_results):
    ev = r['eval']
    for key, label in ROWS if index == 0 else ROWS[:1]:
      ax.errorbar(
        ev['steps'],
        ev[key]['mean'],
        yerr=ev[key]['ci95'],
        marker='o',
        ms=3,
        capsize=2,
        label=label.format(**_fields(r)),
      )
  first = all_results[0]
  if 'goal_seeking_controller' in first['eval']:
    ax.axhline(
      first['eval']['goal_seeking_controller']['mean'][0],
      color='0.5',
      ls='--',
      label='goal-seeking controller',
    )
  family = first['config']['env'].get('name', 'navigation_2d')
  ax.set(
    xlabel='policy-gradient steps',
    ylabel='average return',
    xticks=first['eval']['steps'],
    title=(
      f'{family}, {first["eval"]["num_tasks"]} held-out goals '
      f'({hardware_label(first["run"])})'
    ),
  )
  ax.title.set_fontsize(7)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def load_cosines(root: str | pathlib.Path) -> list[dict]:
  """The ``experiments.meta_rl.cosines`` outputs (``*.json``) under ``root``, by
  training iteration."""
  points = [
    json.loads(p.read_text()) for p in sorted(pathlib.Path(root).glob('*.json'))
  ]
  return sorted(points, key=lambda r: r['step'])


def cosines_table(points: list[dict]) -> str:
  """Per params point and estimator: one batch's cosine with the mean of the other
  batches', the split halves' cosine, the cosine and norm ratio against
  ``'dice_full'`` on the same batch (means, 95% CI over batches), and the cosine of
  its mean over all batches with first order's."""
  rows = [
    '| iteration | estimator | vs own mean (other batches) | split halves '
    "| vs dice_full, same batch | norm / dice_full's | mean vs first_order's mean "
    '| meta-batches | hardware |',
    '|' + ' --- |' * 9,
  ]
  for r in points:
    for name, e in r['estimators'].items():
      own, same = e['cosine_to_own_mean'], e['cosine_to_dice_full_same_batch']
      ratio = e['norm_ratio_to_dice_full_same_batch']['mean']
      rows.append(
        f'| {r["step"]} | {name} | {own["mean"]:.3f} ± {own["ci95"]:.3f} '
        f'| {e["split_half_cosine"]:.3f} | {same["mean"]:.3f} ± {same["ci95"]:.3f} '
        f'| {ratio:.4f} | {e["cosine_of_means"]["first_order"]:.3f} '
        f'| {r["batches"]} | {hardware_label(r["run"])} |'
      )
  return '\n'.join(rows) + '\n'


if __name__ == '__main__':
  if len(sys.argv) > 1 and sys.argv[1] == '--cosines':
    where = sys.argv[2] if len(sys.argv) > 2 else 'results/meta_rl/cosines'
    points = load_cosines(where)
    if not points:
      raise SystemExit(f'no *.json under {where}.')
    print(cosines_table(points), end='')
    raise SystemExit(0)
  path = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else 'results/meta_rl')
  runs = load_runs(path)
  if not runs:
    raise SystemExit(f'no */results.json under {path}.')
  print(results_table(runs), end='')
  if len(sys.argv) > 2:
    plot_returns(runs, sys.argv[2])
