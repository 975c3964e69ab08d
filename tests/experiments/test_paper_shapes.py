"""Every Omniglot learner trains and evaluates at its paper's largest episodes with
the library's default batching, without crashing (issue 23): 20-way at the largest
shot its paper reports (``paper_shapes.largest_setting``).

Each runs in a subprocess (``paper_shapes.py``), so a segmentation fault, such as
the XLA:CPU YNNPACK crash that ProtoNet's 60-way 5-shot 5-query episode hit under
jaxlib 0.10.2 (``jmeta/xla_workarounds.py``), fails its test instead of ending the
suite. ``XLA_FLAGS`` is cleared: the learners run with jaxlib's own defaults.
"""

import json
import os
import pathlib
import signal
import subprocess
import sys

import numpy as np
import paper_shapes
import pytest

from experiments.omniglot import learners, report
from experiments.omniglot.configs import base

ROOT = pathlib.Path(__file__).parents[2]
CONFIGS = ROOT / 'experiments' / 'omniglot' / 'configs'
# Every learner with an Omniglot config (the pretraining baseline has none).
WITH_CONFIG = [a for a in learners.ALGORITHMS if (CONFIGS / f'{a}.py').exists()]


def test_every_omniglot_config_is_checked():
  assert len(WITH_CONFIG) == len(learners.ALGORITHMS) - 1


@pytest.mark.parametrize('algorithm', WITH_CONFIG)
def test_no_setting_the_paper_reports_has_larger_episodes(algorithm):
  n_way, k_shot = base.parse_setting(paper_shapes.largest_setting(algorithm))
  for setting in report.PAPER[algorithm][0]:
    way, shot = base.parse_setting(setting)
    assert way <= n_way and shot <= k_shot, setting


@pytest.mark.parametrize('algorithm', WITH_CONFIG)
def test_paper_episode_shapes_train_and_evaluate_with_default_batching(algorithm):
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  proc = subprocess.run(
    [sys.executable, '-m', 'tests.experiments.paper_shapes', algorithm],
    capture_output=True,
    text=True,
    timeout=900,
    cwd=ROOT,
    env=env,
  )
  if proc.returncode < 0:
    pytest.fail(
      f'{algorithm} died with {signal.Signals(-proc.returncode).name} at its paper '
      f'shapes: {proc.stderr[-2000:]}'
    )
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  assert out['algorithm'] == algorithm
  assert out['setting'] == paper_shapes.largest_setting(algorithm)
  # One accuracy per test episode, each a count of correct queries over their number.
  assert len(out['accuracy']) == 2
  correct = np.asarray(out['accuracy']) * out['test_queries']
  np.testing.assert_allclose(correct, np.round(correct), atol=1e-3)
  assert np.all((0 <= correct) & (correct <= out['test_queries']))
