"""The probe re-tests a trained workdir: its own setting repeats test_step<N>.json."""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl import app

# main defines the runner's absl flags (workdir, ...): probe must import beside them.
from experiments.omniglot import learners, main, probe, train  # noqa: F401
from experiments.omniglot.configs import tiny
from jmeta.data import omniglot


def test_probe_repeats_the_test_record_and_reports_each_leaf(tmp_path):
  config = tiny.get_config()
  config.num_iterations = config.checkpoint_every = 10
  out = train.train_and_evaluate(config, str(tmp_path))
  record = json.loads((tmp_path / 'test_step10.json').read_text())['test']['8']

  result = probe.probe(
    tmp_path, [config.eval.inner_steps, 1], [], episodes=8, compare_batches=1
  )
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
  # One step at 2.0 on a trained init: the estimators differ, within [-1, 1].
  (compared,) = result['first_vs_second_order']
  assert -1 <= compared['cosine'] < 1 - 1e-4
  assert {'layer/head/w', 'layer/block_0/scale'} <= set(compared)

  with pytest.raises(app.UsageError, match='exists'):
    probe.probe(tmp_path, [1], [], episodes=8)
  # The command line: its flags parse, and it refuses to overwrite the record.
  command = [
    sys.executable,
    '-m',
    'experiments.omniglot.probe',
    f'--workdir={tmp_path}',
  ]
  done = subprocess.run(command, capture_output=True, text=True, timeout=300)
  assert done.returncode != 0 and 'exists' in done.stderr, done.stderr[-2000:]


def test_first_order_equals_maml_as_the_inner_rate_vanishes():
  # d phi / d theta = I - alpha H -> I: first-order MAML is exact MAML in the limit.
  config = tiny.get_config()
  config.inner_learning_rate = 1e-6
  learner = learners.make_learner(config)
  bank = jnp.asarray(omniglot.load_split(config.data.protocol, 'train'))
  batch = train.make_sampler(config, bank, train=True).sample(jax.random.key(1), 4)
  params = learner.init(jax.random.key(0), batch.support_inputs[0])
  (compared,) = probe.first_vs_second_order(config, params, [batch])
  assert compared['cosine'] == pytest.approx(1, abs=1e-5)
  assert compared['norm_ratio'] == pytest.approx(1, abs=1e-4)
