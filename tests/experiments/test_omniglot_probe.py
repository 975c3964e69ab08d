"""The probe re-tests a trained workdir: its own setting repeats test_step<N>.json."""

import json

import numpy as np
import pytest
from absl import app

from experiments.omniglot import probe, train
from experiments.omniglot.configs import tiny


def test_probe_repeats_the_test_record_and_reports_each_leaf(tmp_path):
  config = tiny.get_config()
  config.num_iterations = config.checkpoint_every = 10
  out = train.train_and_evaluate(config, str(tmp_path))
  record = json.loads((tmp_path / 'test_step10.json').read_text())['test']['8']

  result = probe.probe(tmp_path, [config.eval.inner_steps, 1], [], episodes=8)
  own, one_step = result['test']
  assert (own['inner_steps'], own['inner_learning_rate']) == (
    config.eval.inner_steps,
    config.inner_learning_rate,
  )
  # The same params, episodes and inner loop as the run's own test.
  assert own['accuracy'] == pytest.approx(record['accuracy'], abs=1e-6)
  assert one_step['inner_steps'] == 1
  head = np.asarray(out['state'].params['head']['w'])
  stats = result['params']['head/w']
  assert stats['rms'] == pytest.approx(np.sqrt(np.mean(head**2)), rel=1e-6)
  assert stats['max_abs'] == pytest.approx(np.abs(head).max(), rel=1e-6)
  assert json.loads((tmp_path / 'probe_step10.json').read_text()) == result

  with pytest.raises(app.UsageError, match='exists'):
    probe.probe(tmp_path, [1], [], episodes=8)
