"""The batch-norm probe re-tests a metric learner's workdir: its own mode repeats
test_step<N>.json, on every way the run tested."""

import json

import pytest
from absl import app

from experiments.omniglot import probe_batch_norm, train
from experiments.omniglot.configs import tiny, tiny_metric


def test_support_rows_repeat_the_test_record_for_every_way(tmp_path):
  config = tiny_metric.get_config('protonet')
  config.num_iterations = config.checkpoint_every = 10
  train.train_and_evaluate(config, str(tmp_path))
  record = json.loads((tmp_path / 'test_step10.json').read_text())
  own = {
    5: record['test']['8']['accuracy'],
    20: record['test_extra_ways']['20']['8']['accuracy'],
  }

  result = probe_batch_norm.probe(tmp_path, 20, episodes=8, per_call=4)
  rows = {(r['n_way'], r['batch_norm']): r for r in result['test']}
  assert set(rows) == {(w, m) for w in (5, 20) for m in probe_batch_norm.MODES}
  for way, accuracy in own.items():
    # The same params and episodes as the run's own test, with its own statistics.
    assert rows[way, 'support']['accuracy'] == pytest.approx(accuracy, abs=1e-6)
  assert result['trained_batch_norm'] == 'support'
  saved = json.loads((tmp_path / 'batch_norm_probe_step10.json').read_text())
  assert saved == result
  with pytest.raises(app.UsageError, match='exists'):
    probe_batch_norm.probe(tmp_path, 20, episodes=8, per_call=4)


def test_a_gradient_learner_is_refused(tmp_path):
  (tmp_path / 'config.json').write_text(json.dumps(tiny.get_config().to_dict()))
  with pytest.raises(app.UsageError, match='needs a metric learner'):
    probe_batch_norm.probe(tmp_path, 20, episodes=8, per_call=4)
