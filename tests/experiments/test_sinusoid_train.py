"""A real, tiny train_and_evaluate of the sinusoid experiment."""

import json

import numpy as np
import pytest
from run_checks import assert_log_names_commit, log_to

import jmeta
from experiments.sinusoid import train
from experiments.sinusoid.configs import all as all_learners
from experiments.sinusoid.configs import smoke


def test_train_and_evaluate_writes_every_output(tmp_path):
  config = smoke.get_config()
  config.algorithms = ('maml', 'reptile')
  with log_to(tmp_path / 'log.txt'):
    results = train.train_and_evaluate(config, str(tmp_path / 'run'))

  for name in train.OUTPUTS:
    assert (tmp_path / 'run' / name).stat().st_size > 0, name
  saved = json.loads((tmp_path / 'run' / 'results.json').read_text())
  assert_log_names_commit(tmp_path / 'log.txt', saved['run']['git_commit'])
  assert saved['algorithms'].keys() == {'maml', 'reptile'}
  for r in results['algorithms'].values():
    assert len(r['mse_mean']) == config.eval.steps + 1
    assert all(h > 0 for h in r['mse_ci95'])
  records = [json.loads(line) for line in (tmp_path / 'run' / 'metrics.jsonl').open()]
  steps = [r['step'] for r in records if r['algorithm'] == 'maml']
  assert steps == list(
    range(config.log_every, config.num_iterations + 1, config.log_every)
  )
  table = (tmp_path / 'run' / 'results.md').read_text()
  assert 'MAML (second order)' in table and 'Reptile' in table


def test_refuses_to_overwrite_an_earlier_run(tmp_path):
  (tmp_path / 'results.json').write_text('{"precious": true}')
  with pytest.raises(FileExistsError, match='does not overwrite'):
    train.train_and_evaluate(smoke.get_config(), str(tmp_path))
  assert json.loads((tmp_path / 'results.json').read_text()) == {'precious': True}


def test_unknown_algorithm_is_named(tmp_path):
  config = smoke.get_config()
  config.algorithms = ('maml', 'mamll')
  with pytest.raises(ValueError, match="unknown entries \\['mamll'\\]"):
    train.train_and_evaluate(config, str(tmp_path))


def test_every_gradient_learner_runs_through_the_same_code(tmp_path):
  config = all_learners.get_config()
  config.num_iterations = 4
  config.log_every = 2
  config.eval.num_tasks = 4
  config.eval.num_query = 5
  config.eval.steps = 2
  config.eval.report_steps = (0, 2)
  config.eval.plot_tasks = 1
  assert set(config.algorithms) == set(jmeta.LEARNERS)
  results = train.train_and_evaluate(config, str(tmp_path))
  for name, r in results['algorithms'].items():
    assert np.all(np.isfinite(r['mse_mean'])), name
  # Test-time adaptation moves the predictions: two steps change the MSE.
  means = {n: r['mse_mean'] for n, r in results['algorithms'].items()}
  assert means['maml'][2] != means['maml'][0]
  assert means['meta_sgd'][2] != means['meta_sgd'][0]
