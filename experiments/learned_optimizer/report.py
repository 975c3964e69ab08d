"""Markdown table of a committed learned-optimizer run: mean loss after the
unroll on held-out problems, the learned rule against tuned optax baselines.

python -m experiments.learned_optimizer.report results/learned_optimizer/quadratic

With several run folders, one row per run (``generalisation_table``): a learned
rule tested on other problems than it was meta-trained on.
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


def generalisation_table(results_dirs: list[str | pathlib.Path]) -> str:
  """One row per run: the problem its test used, the learned rule against the best
  tuned baseline after the unroll (minibatch and held-out loss) and over it."""
  from experiments.learned_optimizer.train import LABELS

  rows = [
    '| tested on | steps | learned: loss after the unroll | best baseline after the '
    'unroll | learned: held-out loss | that baseline: held-out loss | learned: mean '
    'loss over the unroll | best baseline over the unroll | learned rank |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ]
  for results_dir in results_dirs:
    results = json.loads((pathlib.Path(results_dir) / 'results.json').read_text())
    test = results['test']
    learned = test['learned']
    baselines = {k: v for k, v in test.items() if k != 'learned'}
    final = min(baselines, key=lambda k: baselines[k]['final_loss_mean'])
    unroll = min(baselines, key=lambda k: baselines[k]['unroll_loss_mean'])
    rank = 1 + sum(
      r['final_loss_mean'] < learned['final_loss_mean'] for r in baselines.values()
    )
    b, u = baselines[final], baselines[unroll]
    rows.append(
      f'| {results["problems"]["test"]} | {results["problems"]["test_steps"]} | '
      f'{learned["final_loss_mean"]:.4f} ± {learned["final_loss_ci95"]:.4f} | '
      f'{LABELS[final]} (lr {b["learning_rate"]:.3g}): {b["final_loss_mean"]:.4f} ± '
      f'{b["final_loss_ci95"]:.4f} | {learned["heldout_loss_mean"]:.4f} ± '
      f'{learned["heldout_loss_ci95"]:.4f} | {b["heldout_loss_mean"]:.4f} ± '
      f'{b["heldout_loss_ci95"]:.4f} | {learned["unroll_loss_mean"]:.3f} ± '
      f'{learned["unroll_loss_ci95"]:.3f} | {LABELS[unroll]}: '
      f'{u["unroll_loss_mean"]:.3f} ± {u["unroll_loss_ci95"]:.3f} | {rank} of {len(test)} |'
    )
  first = json.loads((pathlib.Path(results_dirs[0]) / 'results.json').read_text())
  rows.append('')
  rows.append(
    f'The learned rule of every row is the one meta-trained on '
    f'{first["problems"]["train"]} ({first["config"]["steps"]} steps); each row '
    'tunes the baselines on its own problem. Losses are means over '
    f'{first["config"]["eval"]["num_tasks"]} held-out problems (95% CI); "loss" is '
    'the minibatch loss, "held-out" the loss on the held-out images. Rank: by the '
    'minibatch loss after the unroll, among the learned rule and the baselines.'
  )
  return '\n'.join(rows) + '\n'


if __name__ == '__main__':
  if len(sys.argv) > 2:  # several runs: the generalisation table
    print(generalisation_table(sys.argv[1:]), end='')
  else:
    print(
      table(
        sys.argv[1] if len(sys.argv) > 1 else 'results/learned_optimizer/quadratic'
      ),
      end='',
    )
