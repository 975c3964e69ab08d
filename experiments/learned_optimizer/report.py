"""Markdown table of a committed learned-optimizer run: mean loss after the
unroll on held-out problems, the learned rule against tuned optax baselines.

python -m experiments.learned_optimizer.report results/learned_optimizer/quadratic
"""

from __future__ import annotations

import json
import pathlib
import sys

from experiments.common.run_info import hardware_label


def results_table(results: dict) -> str:
  """One row per optimizer, lowest mean final loss first."""
  from experiments.learned_optimizer.train import LABELS, problem_label

  config, test = results['config'], results['test']
  steps = results.get('problems', {}).get('test_steps', config['steps'])
  # MNIST runs also measure the final params on all training and held-out images.
  extra = [
    (key, title)
    for key, title in (
      ('train_loss', 'loss on all optimizee-training images'),
      ('heldout_loss', 'loss on the held-out images'),
    )
    if f'{key}_mean' in test['learned']
  ]
  minibatch = ' (minibatch)' if extra else ''
  rows = [
    f'| optimizer | learning rate | mean loss{minibatch} after {steps} steps (95% CI) '
    f'| median | mean loss over steps 1..{steps} (95% CI) |'
    + ''.join(f' {title} after {steps} steps (95% CI) |' for _, title in extra),
    '| --- | --- | --- | --- | --- |' + ' --- |' * len(extra),
  ]
  for name, r in sorted(test.items(), key=lambda kv: kv[1]['final_loss_mean']):
    lr = f'{r["learning_rate"]:.3g} (tuned)' if 'learning_rate' in r else 'learned'
    rows.append(
      f'| {LABELS.get(name, name)} | {lr} | {r["final_loss_mean"]:.4f} ± '
      f'{r["final_loss_ci95"]:.4f} | {r["final_loss_median"]:.4f} | '
      f'{r["unroll_loss_mean"]:.3f} ± {r["unroll_loss_ci95"]:.3f} |'
      + ''.join(
        f' {r[f"{key}_mean"]:.4f} ± {r[f"{key}_ci95"]:.4f} |' for key, _ in extra
      )
    )
  train = results['train']
  rows.append('')
  rows.append(
    f'{config["eval"]["num_tasks"]:,} held-out {problem_label(results)}; '
    f'{train["meta_steps"]:,} meta-steps of {config["estimator"]} '
    f'({config["num_tasks"]} problems, truncation {config["truncation"]}) in '
    f'{train["seconds"] / 60:.0f} min on {hardware_label(results["run"])}; '
    f'`{results["run"]["command"]}`'
  )
  return '\n'.join(rows) + '\n'


def table(results_dir: str | pathlib.Path) -> str:
  path = pathlib.Path(results_dir) / 'results.json'
  if not path.exists():
    raise ValueError(f'no results.json under {results_dir}.')
  return results_table(json.loads(path.read_text()))


if __name__ == '__main__':
  print(
    table(sys.argv[1] if len(sys.argv) > 1 else 'results/learned_optimizer/quadratic'),
    end='',
  )
