"""ProtoNet's reference protocol in the runner: early stopping and trainval."""

import json

import numpy as np
import pytest

from experiments.common.workdir import completed_result
from experiments.omniglot import train
from experiments.omniglot.configs import protonet_full, tiny_metric
from jmeta.data import omniglot


def reference_rule(losses, patience):
  """The loop of jakesnell/prototypical-networks' train.py, written out: the
  epoch (from 0) of the best loss and the epoch it stops after, or None."""
  best_loss, wait, best = np.inf, 0, None
  for epoch, loss in enumerate(losses):
    if loss < best_loss:
      best_loss, wait, best = loss, 0, epoch
    else:
      wait += 1
      if wait > patience:
        return best, epoch
  return best, None


def test_early_stopping_follows_the_reference_loop():
  assert train.early_stopping([3.0, 2.0, 2.0, 1.0, 5.0, 5.0], 2) == (3, 2)
  # A tie is no improvement, and neither is a NaN.
  assert train.early_stopping([1.0, 1.0, np.nan], 5) == (0, 2)
  assert train.early_stopping([np.nan, 4.0], 5) == (1, 0)
  assert train.early_stopping([], 3) == (None, 0)
  rng = np.random.default_rng(0)
  for _ in range(200):
    losses = list(rng.integers(0, 6, size=rng.integers(1, 30)).astype(float))
    patience = int(rng.integers(1, 5))
    ref_best, ref_stop = reference_rule(losses, patience)
    # Fed one loss at a time, as the runner validates: it stops where the
    # reference does, with the same best epoch.
    stop = next(
      (
        n - 1
        for n in range(1, len(losses) + 1)
        if train.early_stopping(losses[:n], patience)[1] > patience
      ),
      None,
    )
    assert stop == ref_stop, (losses, patience)
    end = len(losses) if stop is None else stop + 1
    assert train.early_stopping(losses[:end], patience)[0] == ref_best


def frozen_config(**changes):
  """A tiny ProtoNet whose params never move (rate 0) on fixed validation episodes,
  so every validation loss equals the first and patience 1 stops at the third
  validation: step 3 x eval_every."""
  config = tiny_metric.get_config('protonet')
  config.outer_learning_rate = 0.0
  config.early_stopping_patience = 1
  config.eval_every = 5
  config.eval.extra_n_ways = ()
  for field, value in changes.items():
    config[field] = value
  return config


def test_a_run_stops_early_records_why_and_is_complete(tmp_path):
  config = frozen_config()
  train.train_and_evaluate(config, str(tmp_path))
  records = [json.loads(line) for line in (tmp_path / 'metrics.jsonl').open()]
  assert records[-1]['step'] == 15
  vals = [r['val_loss'] for r in records if 'val_loss' in r]
  assert len(vals) == 3 and vals[0] == vals[1] == vals[2] and np.isfinite(vals[0])
  result = json.loads((tmp_path / 'test_step15.json').read_text())
  assert result['iterations'] == 15
  assert result['early_stopping'] == {
    'patience': 1,
    'stopped': True,
    'best_step': 5,
    'best_val_loss': vals[0],
    # Best epoch 0 + patience 1 epoch of 5 episodes.
    'reference_trainval_iterations': 5,
  }
  assert completed_result(tmp_path, config.num_iterations).name == 'test_step15.json'
  with pytest.raises(train.RunCompleteError, match='stopped early by validation'):
    train.train_and_evaluate(config, str(tmp_path))


def test_a_resumed_run_stops_where_an_uninterrupted_one_does(tmp_path):
  # The first stretch ends at 10 after two validations that did not stop it; the
  # second resumes from its checkpoint and must count them.
  train.train_and_evaluate(frozen_config(num_iterations=10), str(tmp_path))
  assert not json.loads((tmp_path / 'test_step10.json').read_text())['early_stopping'][
    'stopped'
  ]
  train.train_and_evaluate(frozen_config(), str(tmp_path))
  result = json.loads((tmp_path / 'test_step15.json').read_text())
  assert result['resumed_from_step'] == 10
  assert result['early_stopping']['stopped']
  assert result['early_stopping']['best_step'] == 5


def test_trainval_trains_on_both_splits_and_does_not_validate(tmp_path):
  config = frozen_config(num_iterations=10, early_stopping_patience=0)
  config.data.train_split = 'trainval'
  banks = {s: omniglot.load_split('vinyals', s) for s in ('train', 'val')}
  bank = train.training_bank(config, banks)
  assert bank.shape[0] == 1028 + 172
  np.testing.assert_array_equal(bank[1028:], banks['val'])
  train.train_and_evaluate(config, str(tmp_path))
  records = [json.loads(line) for line in (tmp_path / 'metrics.jsonl').open()]
  assert [r['step'] for r in records] == [5, 10]
  assert not any('val_loss' in r or 'val_accuracy' in r for r in records)


def test_bad_early_stopping_settings_are_named():
  config = frozen_config()
  config.data.train_split = 'trainval'
  with pytest.raises(ValueError, match='early_stopping_patience needs the validation'):
    train.check_config(config)
  config = frozen_config(early_stopping_patience=-1)
  with pytest.raises(ValueError, match='early_stopping_patience must be an int >= 0'):
    train.check_config(config)
  config = frozen_config()
  config.data.train_split = 'val'
  with pytest.raises(ValueError, match="config.data.train_split = 'val'"):
    train.check_config(config)


def test_the_full_protocol_config_is_the_reference_code_s():
  config = protonet_full.get_config('5w1s')
  train.check_config(config)
  # Training episodes: 60 ways, 5 queries; validation and test: 5 ways, 15
  # queries; an epoch of 100 episodes, validated on 100 fresh episodes; patience 200;
  # Adam at 1e-3 halved every 20 epochs.
  assert (config.data.train_n_way, config.data.train_q_query) == (60, 5)
  assert (config.data.n_way, config.data.k_shot, config.data.q_query) == (5, 1, 15)
  assert config.eval.extra_n_ways == (20,)
  assert (config.eval_every, config.eval.val_episodes) == (100, 100)
  assert config.eval.val_resample and config.early_stopping_patience == 200
  assert config.outer_learning_rate == 1e-3
  assert (config.outer_decay_every, config.outer_decay_rate) == (2_000, 0.5)
  assert config.eval.test_episodes == (1000,)
  assert protonet_full.get_config('5w5s').data.k_shot == 5


@pytest.mark.parametrize('algorithm', ['protonet', 'maml'])
def test_the_validation_loss_is_the_query_loss_the_learner_trains_on(algorithm):
  """Per episode, ``metrics`` gives the query cross-entropy that ``meta_gradient``
  averages: ProtoNet's episode loss, MAML's query loss after adaptation (with the
  training's inner steps)."""
  import jax

  from experiments.omniglot import learners
  from experiments.omniglot.configs import tiny

  if algorithm == 'protonet':
    config = tiny_metric.get_config('protonet')
  else:
    config = tiny.get_config('5w1s')
    config.eval.inner_steps = config.inner_steps
  learner = learners.make_learner(config)
  bank = omniglot.load_split(config.data.protocol, 'val')
  batch = train.make_sampler(config, bank, train=True).sample(jax.random.key(3), 4)
  params = learner.init(jax.random.key(0), batch.support_inputs[0])
  per_task = learner.metrics(params, batch, learners.train_n_way(config))
  assert per_task['loss'].shape == (4,)
  expected = learner.estimator.meta_gradient(params, batch).metrics['loss']
  np.testing.assert_allclose(per_task['loss'].mean(), expected, rtol=1e-5)
  np.testing.assert_array_equal(
    per_task['accuracy'], learner.accuracy(params, batch, learners.train_n_way(config))
  )
