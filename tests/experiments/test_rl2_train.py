"""The RL^2 bandit experiment: a real smoke run, resuming, the baselines script,
and the README's Table 1 block against the committed runs."""

import importlib
import json
import pathlib

import jax
import numpy as np
import pytest
from run_checks import assert_log_names_commit, log_to, readme_block, stop_and_resume

from experiments.rl2 import baselines, report, train
from experiments.rl2.configs import default, smoke

ROOT = pathlib.Path(__file__).parents[2]


def test_default_config_is_table_1s_smallest_setting():
  config = default.get_config()
  assert (config.num_arms, config.num_pulls) == (5, 10)
  assert train.make_env(config).horizon == 1  # one pull per episode


@pytest.mark.parametrize(
  'group, field, value, message',
  [
    ('eval', 'num_tasks', 1, 'config.eval.num_tasks must be at least 2'),
    (None, 'num_pulls', 0, 'config.num_pulls'),
    (None, 'num_trials', -8, 'config.num_trials'),
  ],
)
def test_bad_config_values_are_named(tmp_path, group, field, value, message):
  config = smoke.get_config()
  setattr(config[group] if group else config, field, value)
  with pytest.raises(ValueError, match=message):
    train.train_and_evaluate(config, str(tmp_path))


@pytest.fixture(scope='module')
def smoke_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('rl2') / 'run'
  with log_to(workdir.parent / 'log.txt'):
    out = train.train_and_evaluate(smoke.get_config(), str(workdir))
  return out, workdir


def test_smoke_run_writes_its_files_and_resumes_to_the_same_params(smoke_run, tmp_path):
  out, workdir = smoke_run
  records = [json.loads(line) for line in (workdir / 'metrics.jsonl').open()]
  assert [r['step'] for r in records] == [2, 4]
  assert {'loss', 'trial_return', 'approx_kl', 'trials'} <= records[0].keys()
  saved = json.loads((workdir / 'results.json').read_text())
  assert_log_names_commit(workdir.parent / 'log.txt', saved['run']['git_commit'])
  assert saved['iterations'] == 4 and saved['trials_trained'] == 4 * 8
  assert saved['run']['command'] and 'git_commit' in saved['run']
  assert (
    0 <= saved['eval']['rl2']['mean'] <= 4 and saved['eval']['rl2']['num_tasks'] == 16
  )
  resumed = stop_and_resume(
    train.train_and_evaluate, train.OUTPUTS, smoke.get_config(), tmp_path, 2
  )
  assert resumed['resumed_from_iteration'] == 2
  jax.tree.map(
    np.testing.assert_array_equal, resumed['state'].params, out['state'].params
  )


def test_baselines_script_and_report(smoke_run, tmp_path):
  out, workdir = smoke_run
  assert (
    baselines.main(
      [
        f'--out={tmp_path / "baselines"}',
        '--num-tasks=16',
        '--tune-tasks=8',
        '--arms',
        '3',
        '--pulls',
        '4',
      ]
    )
    == 0
  )
  result = json.loads((tmp_path / 'baselines' / 'results.json').read_text())
  cell = result['cells'][0]
  assert (cell['num_arms'], cell['num_pulls']) == (3, 4)
  assert cell['ucb1']['c'] in baselines.UCB1_C
  assert set(cell['gittins']['tuning']) == {'0.5', '0.75', '0.875'}
  (tmp_path / 'k3_n4').mkdir()
  (tmp_path / 'k3_n4' / 'results.json').write_text(
    (workdir / 'results.json').read_text()
  )
  table = report.results_table(*report.load(tmp_path))
  row = next(line for line in table.splitlines() if line.startswith('| n = 4, k = 3'))
  assert f'{out["eval"]["rl2"]["mean"]:.2f}' in row and '4 iterations' in row
  # A registered long run beside the folder counts once it has results, and is
  # named as unfinished before.
  (tmp_path / 'k3_n4' / 'results.json').unlink()
  long_run = tmp_path / 'full' / 'rl2_k3_n4'
  long_run.mkdir(parents=True)
  (long_run / 'config.json').write_text(json.dumps({'num_pulls': 4, 'num_arms': 3}))
  table = report.results_table(*report.load(tmp_path, tmp_path / 'full'))
  row = next(line for line in table.splitlines() if line.startswith('| n = 4, k = 3'))
  assert row.endswith('| not finished | – | see below |')
  assert 'full/rl2_k3_n4`, not finished;' in table
  (long_run / 'results.json').write_text((workdir / 'results.json').read_text())
  table = report.results_table(*report.load(tmp_path, tmp_path / 'full'))
  row = next(line for line in table.splitlines() if line.startswith('| n = 4, k = 3'))
  assert f'{out["eval"]["rl2"]["mean"]:.2f}' in row and 'not finished' not in table
  # A registered run not started yet is named with the setting of its config file.
  waiting = tmp_path / 'full' / 'rl2_k5_n500'
  waiting.mkdir()
  command = ['python', '-m', 'experiments.rl2.main', f'--workdir={waiting}']
  command.append('--config=experiments/rl2/configs/k5_n500.py')
  (waiting / 'RUN.json').write_text(json.dumps({'command': command}))
  (pending,) = [
    r for r in report.load(tmp_path, tmp_path / 'full')[1] if 'unfinished' in r
  ]
  assert (pending['num_pulls'], pending['num_arms'], pending['started']) == (
    500,
    5,
    False,
  )
  # Settings of the paper's table keep its numbers; RL^2 cells without a run say so.
  result['cells'][0].update(num_arms=50, num_pulls=500)
  table = report.results_table(result, [])
  assert '| 463.7 |' in table and 'not run | 438.9' in table


def test_readme_table_is_the_committed_runs_report():
  block = readme_block('python -m experiments.rl2.report results/meta_rl/rl2', 'rl2')
  assert block == report.results_table(*report.load(ROOT / 'results/meta_rl/rl2'))


def test_readme_statement_on_the_shared_value_runs_matches_their_files(capsys):
  folder = ROOT / 'results/meta_rl/rl2_ablations/shared_value'
  block = readme_block(
    'python -m experiments.rl2.report '
    'results/meta_rl/rl2_ablations/shared_value --runs-only',
    'rl2_shared_value',
    folder / 'README.md',
  )
  runs = report.folder_runs(folder)
  assert block == report.rl2_runs_table(runs)
  assert report.main([str(folder), '--runs-only']) == 0
  assert capsys.readouterr().out == block
  by_setting = {(r['num_pulls'], r['num_arms']): r for r in runs}
  assert all('separate_value' not in r['config'] for r in runs)
  text = ' '.join((ROOT / 'README.md').read_text().split())
  short, long = by_setting[(100, 5)], by_setting[(500, 5)]
  paper = report.PAPER_TABLE_1
  assert (
    f'e.g. {report.cell(short["eval"]["rl2"])} at n = 100 with 5 arms and '
    f'{report.cell(long["eval"]["rl2"])} at n = 500 (paper {paper[(100, 5)][-1]} '
    f'and {paper[(500, 5)][-1]})' in text
  )
  # "fell short": more than ten standard errors below the paper's RL^2.
  for run in (short, long):
    rl2 = run['eval']['rl2']
    assert paper[(run['num_pulls'], 5)][-1] - rl2['mean'] > 10 * rl2['stderr']


@pytest.mark.parametrize('arms', [5, 10, 50])
def test_the_500_pull_long_runs_are_registered_as_the_readme_says(arms):
  name = f'rl2_k{arms}_n500'
  run = json.loads((ROOT / 'results/meta_rl/full' / name / 'RUN.json').read_text())
  assert f'--config=experiments/rl2/configs/k{arms}_n500.py' in run['command']
  config = report.unfinished_long_run(ROOT / 'results/meta_rl/full' / name)
  if config is not None:  # once finished, the generated table shows its budget
    assert (config['num_pulls'], config['num_arms']) == (500, arms)
    module = importlib.import_module(f'experiments.rl2.configs.k{arms}_n500')
    settings = module.get_config()
    text = ' '.join((ROOT / 'README.md').read_text().split())
    assert (
      f'of {settings.num_iterations} iterations of {settings.num_trials} trials '
      'each.' in text
    )


def test_the_shared_value_500_pull_run_differs_from_the_registered_one_in_the_value_only():
  folder = ROOT / 'results/meta_rl/rl2_ablations/shared_value/k5_n500'
  run = json.loads((folder / 'results.json').read_text())
  registered = importlib.import_module('experiments.rl2.configs.k5_n500').get_config()
  # The registered run's config but for the value head (that run predates the field,
  # when the head was always on the policy's GRU).
  assert 'separate_value' not in run['config'] and registered.separate_value
  assert {**run['config'], 'separate_value': True} == registered.to_dict()
  assert run['iterations'] == registered.num_iterations and not run['git_dirty']


def test_readme_statement_on_the_value_gru_runs_matches_their_files():
  _, runs = report.load(ROOT / 'results/meta_rl/rl2')
  new = {(r['num_pulls'], r['num_arms']): r for r in runs if 'eval' in r}
  old = {
    (r['num_pulls'], r['num_arms']): r
    for r in report.folder_runs(ROOT / 'results/meta_rl/rl2_ablations/shared_value')
  }
  for run in new.values():
    assert run['config']['separate_value'] and not run['git_dirty']
  text = ' '.join((ROOT / 'README.md').read_text().split())

  def cell(runs, setting):
    return report.cell(runs[setting]['eval']['rl2'])

  assert (
    f'those two settings reach {cell(new, (100, 5))} and {cell(new, (500, 5))}, and '
    f'10 arms at n = 100 reaches {cell(new, (100, 10))} against '
    f'{cell(old, (100, 10))}. 50 arms at n = 100 did worse with it, '
    f'{cell(new, (100, 50))} against {cell(old, (100, 50))}, below Thompson' in text
  )
  # "the same budgets": iterations and trials per iteration as the first round.
  for setting in ((100, 5), (500, 5), (100, 10), (100, 50)):
    for key in ('num_iterations', 'num_trials'):
      assert new[setting]['config'][key] == old[setting]['config'][key]
    better = new[setting]['eval']['rl2']['mean'] > old[setting]['eval']['rl2']['mean']
    assert better == (setting != (100, 50))
  baselines, _ = report.load(ROOT / 'results/meta_rl/rl2')
  (cell_50,) = [
    c for c in baselines['cells'] if (c['num_pulls'], c['num_arms']) == (100, 50)
  ]
  assert new[(100, 50)]['eval']['rl2']['mean'] < cell_50['thompson']['mean']
  # The collapse, from the run's metrics.
  path = ROOT / 'results/meta_rl/rl2/k50_n100/metrics.jsonl'
  records = {r['step']: r for r in map(json.loads, path.open())}
  before, after = records[330], records[410]
  assert (
    f'the entropy fell from {before["entropy"]:.2f} at iteration 330 to '
    f'{after["entropy"]:.2f} at 410, the training return from '
    f'{before["trial_return"]:.2f} to {after["trial_return"]:.2f}' in text
  )
  later = [r['trial_return'] for s, r in records.items() if s > 410]
  assert max(later) < before['trial_return']  # "did not recover its return"


def test_readme_statement_on_the_10_arm_500_pull_run_matches_its_files():
  folder = ROOT / 'results/meta_rl/full/rl2_k10_n500'
  run = json.loads((folder / 'results.json').read_text())
  records = [json.loads(line) for line in (folder / 'metrics.jsonl').open()]
  text = ' '.join((ROOT / 'README.md').read_text().split())
  paper = report.PAPER_TABLE_1[(500, 10)][-1]
  assert (
    f'10 arms at n = 500 levelled off the same way, at '
    f"{report.cell(run['eval']['rl2'])} against the paper's {paper}, its entropy "
    f'falling to {records[-1]["entropy"]:.2f} by the end' in text
  )
  # "levelled off": after iteration 200 the means over 100 iterations stay within 5%
  # of each other, far below the paper's.
  late = [r['trial_return'] for r in records if r['step'] > 200]
  windows = [np.mean(late[i : i + 10]) for i in range(0, len(late), 10)]
  assert max(windows) - min(windows) < 0.05 * np.mean(windows)
  assert paper - run['eval']['rl2']['mean'] > 20 * run['eval']['rl2']['stderr']


def test_readme_statement_on_the_50_arm_500_pull_run_matches_its_files():
  run = json.loads(
    (ROOT / 'results/meta_rl/full/rl2_k50_n500/results.json').read_text()
  )
  baselines, _ = report.load(ROOT / 'results/meta_rl/rl2')
  (cell,) = [
    c for c in baselines['cells'] if (c['num_pulls'], c['num_arms']) == (500, 50)
  ]
  paper = report.PAPER_TABLE_1[(500, 50)][-1]
  text = ' '.join((ROOT / 'README.md').read_text().split())
  assert (
    f'50 arms at n = 500 reached only {report.cell(run["eval"]["rl2"])} against '
    f'{paper}, below Thompson sampling' in text
  )
  assert run['eval']['rl2']['mean'] < cell['thompson']['mean']
