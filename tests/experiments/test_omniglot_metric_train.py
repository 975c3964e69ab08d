"""Tiny end-to-end metric-learner training on the real Omniglot data."""

import json

import chex
import numpy as np
import pytest
from omniglot_checks import assert_test_record

from experiments.omniglot import train
from experiments.omniglot.configs import tiny_metric


@pytest.mark.parametrize('algorithm', ['protonet', 'matching', 'relation', 'siamese'])
def test_loss_falls_and_both_ways_are_tested(tmp_path, algorithm):
  config = tiny_metric.get_config(algorithm)
  out = train.train_and_evaluate(config, str(tmp_path))
  records = [json.loads(line) for line in (tmp_path / 'metrics.jsonl').open()]
  losses = [r['train_loss'] for r in records]
  # Each log is the mean over 5 steps; the first 20 steps against the last 20.
  assert len(losses) == 12
  assert np.mean(losses[-4:]) < 0.97 * np.mean(losses[:4]), losses
  result = json.loads((tmp_path / 'test_step60.json').read_text())
  q_query = config.data.q_query
  assert_test_record(result['test']['8'], episodes=8, n_way=5, q_query=q_query)
  record = result['test_extra_ways']['20']['8']
  assert_test_record(record, episodes=8, n_way=20, q_query=q_query)
  assert result['config']['model']['batch_norm'] == 'support'
  chex.assert_tree_all_finite(out['state'].params)


def test_mann_trains_and_tests_on_the_tables_episodes(tmp_path):
  config = tiny_metric.get_config('mann')
  config.mann.update(memory_slots=16, memory_width=8, controller_size=16, read_heads=2)
  out = train.train_and_evaluate(config, str(tmp_path))
  records = [json.loads(line) for line in (tmp_path / 'metrics.jsonl').open()]
  losses = [r['train_loss'] for r in records]
  # It starts at chance, log 5 (60 tiny updates on raw pixels teach it little:
  # tests/metric/test_mann.py checks that it trains).
  assert len(losses) == 12 and abs(losses[0] - np.log(5)) < 0.05, losses
  result = json.loads((tmp_path / 'test_step60.json').read_text())
  record = result['test']['8']
  assert_test_record(record, episodes=8, n_way=5, q_query=config.data.q_query)
  assert not result.get('test_extra_ways')  # its head has 5 outputs: 5-way only
  assert set(out['state'].params) == {'controller', 'interface', 'output'}
  chex.assert_tree_all_finite(out['state'].params)


def test_bad_metric_settings_are_named(tmp_path):
  config = tiny_metric.get_config('siamese')
  config.metric.loss = 'hinge'
  with pytest.raises(ValueError, match="config.metric.loss = 'hinge'"):
    train.train_and_evaluate(config, str(tmp_path))
  config = tiny_metric.get_config('protonet')
  config.model.batch_norm = 'running'
  with pytest.raises(ValueError, match="config.model.batch_norm = 'running'"):
    train.train_and_evaluate(config, str(tmp_path))


def test_a_learner_with_its_own_network_refuses_conv4_settings():
  from experiments.omniglot.configs import relation

  config = relation.get_config('5w1s')
  train.check_config(config)
  config.model.compute_dtype = 'bfloat16'
  with pytest.raises(ValueError, match='relation learner has its own network'):
    train.check_config(config)
  config = relation.get_config('5w1s')
  config.model.variant = 'strided'
  with pytest.raises(ValueError, match="config.model.variant = 'strided'"):
    train.check_config(config)


def test_a_learner_with_a_class_head_trains_and_tests_one_way():
  from experiments.omniglot.configs import meta_networks

  config = meta_networks.get_config('5w1s')
  train.check_config(config)
  assert config.eval.extra_n_ways == ()
  config.eval.extra_n_ways = (20,)
  with pytest.raises(ValueError, match='meta_networks trains an 5-way classifier head'):
    train.check_config(config)
  config = meta_networks.get_config('20w1s')
  # The reference clips the summed loss of 10 queries per class at 10.
  assert config.outer_clip_norm == pytest.approx(10 / (20 * 10))


def test_test_episodes_batch_as_configured():
  from experiments.omniglot import learners
  from experiments.omniglot.configs import matching

  config = matching.get_config('5w1s')
  assert config.eval.batching == '' and learners.eval_batching(config) == 'auto'
  config.eval.batching = 'vmap'
  train.check_config(config)
  assert learners.eval_batching(config) == 'vmap'
  config.eval.batching = 'sideways'
  with pytest.raises(ValueError, match="config.eval.batching = 'sideways'"):
    train.check_config(config)
