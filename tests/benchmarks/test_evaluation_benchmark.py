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


def test_protonet_config_comment_matches_its_eval_batching_report():
  import json

  root = pathlib.Path(__file__).parents[2]
  report = json.loads(
    (root / 'benchmarks/results/protonet_eval_batching/cpu_evaluation.json').read_text()
  )
  cells = {r['batching']: r for r in report['results']}
  text = ' '.join(
    (root / 'experiments/omniglot/configs/protonet.py').read_text().split()
  )
  vmap, auto = cells['vmap'], cells['auto']
  ratio = vmap['call_s'] / auto['call_s']
  assert f'{ratio:.1f}x faster' in text
  assert f'{auto["episodes_per_s"]:.1f} against {vmap["episodes_per_s"]:.1f}' in text
  assert f'{auto["peak_rss_mib"]:.0f} against {vmap["peak_rss_mib"]:.0f} MiB' in text
