"""The learned-optimizer experiment: a smoke run, exact resumption, bad configs,
and the README table against the committed run."""

import json

import jax
import numpy as np
import pytest

from experiments.learned_optimizer import train
from experiments.learned_optimizer.configs import default, smoke


@pytest.fixture(scope='module')
def smoke_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('lopt') / 'run'
  return train.train_and_evaluate(smoke.get_config(), str(workdir)), workdir


def test_smoke_run_writes_every_output(smoke_run):
  out, workdir = smoke_run
  for name in (*train.OUTPUTS, 'metrics.jsonl', 'timing.jsonl', 'config.json'):
    assert (workdir / name).stat().st_size > 0, name
  assert list((workdir / 'tensorboard').glob('events.out.tfevents.*'))
  records = [json.loads(line) for line in (workdir / 'metrics.jsonl').open()]
  assert [r['step'] for r in records] == [2, 4, 6]
  saved = json.loads((workdir / 'results.json').read_text())
  assert saved['run']['command'] and 'git_commit' in saved['run']
  assert set(saved['test']) == {'learned', 'sgd', 'adam'}
  for r in saved['test'].values():
    assert np.isfinite(r['final_loss_mean']) and len(r['mean_curve']) == 7
  assert saved['tuning']['sgd']['best_learning_rate'] in (0.01, 0.1)
  assert '| SGD | ' in (workdir / 'results.md').read_text()
  with pytest.raises(FileExistsError, match='does not overwrite'):
    train.train_and_evaluate(smoke.get_config(), str(workdir))


class Stop(Exception):
  pass


def test_a_stopped_run_resumes_to_the_same_meta_params(
  smoke_run, tmp_path, monkeypatch
):
  out, _ = smoke_run
  add_scalars = train.records.add_scalars

  def stop_at_step_4(writer, record, walltime=None):
    if record['step'] == 4:
      raise Stop  # after the checkpoint at meta-step 3
    add_scalars(writer, record, walltime)

  monkeypatch.setattr(train.records, 'add_scalars', stop_at_step_4)
  with pytest.raises(Stop):
    train.train_and_evaluate(smoke.get_config(), str(tmp_path))
  monkeypatch.setattr(train.records, 'add_scalars', add_scalars)
  resumed = train.train_and_evaluate(smoke.get_config(), str(tmp_path))
  assert resumed['train']['resumed_from'] == 3
  jax.tree.map(
    np.testing.assert_array_equal,
    resumed['state'].meta_params,
    out['state'].meta_params,
  )
  records = [json.loads(line) for line in (tmp_path / 'metrics.jsonl').open()]
  assert [r['step'] for r in records] == [2, 4, 6]


@pytest.mark.parametrize(
  'field, value, match',
  [
    ('rule', 'gru', "config.rule must be one of .* got 'gru'"),
    ('estimator', 'reinforce', 'config.estimator must be one of'),
    ('truncation', 4, 'truncation length 4 does not divide the unroll of 6'),
    ('steps', -1, 'config.steps must be a positive int'),
  ],
)
def test_bad_configs_are_named(field, value, match, tmp_path):
  config = smoke.get_config()
  config[field] = value
  with pytest.raises(ValueError, match=match):
    train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists()


def test_default_config_is_the_papers_setting():
  config = default.get_config()
  assert (config.dim, config.steps, config.truncation) == (10, 100, 20)
  assert config.rule == 'lstm' and config.estimator == 'truncated_backprop'
  assert set(config.tune.baselines) == {'sgd', 'momentum', 'nag', 'rmsprop', 'adam'}
