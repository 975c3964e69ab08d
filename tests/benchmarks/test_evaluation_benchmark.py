"""benchmarks/evaluation.py covers every Omniglot config and checks its flags."""

import pathlib

import pytest
from evaluation import ALGORITHMS, SETTINGS, parse_args

from experiments.omniglot import learners
from experiments.omniglot.configs.base import SETTINGS as CONFIG_SETTINGS


def test_every_omniglot_algorithm_with_a_config_is_benchmarked():
  configs = pathlib.Path(learners.__file__).parent / 'configs'
  with_config = [a for a in learners.ALGORITHMS if (configs / f'{a}.py').exists()]
  assert sorted(ALGORITHMS) == sorted(with_config)
  assert SETTINGS == CONFIG_SETTINGS


def test_bad_flags_are_refused():
  with pytest.raises(SystemExit):
    parse_args(['--algorithms', 'protonets'])
  with pytest.raises(SystemExit):
    parse_args(['--repeats', '0'])
  assert parse_args(['--settings', '20w5s']).settings == ['20w5s']
  assert parse_args([]).eval_batching == ['config']
  assert parse_args(['--eval-batching', 'config,map']).eval_batching == [
    'config',
    'map',
  ]
  with pytest.raises(SystemExit):
    parse_args(['--eval-batching', 'chunked'])
