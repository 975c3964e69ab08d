"""learn2learn_reference.py's cells and the comparison tables built from its report."""

import learn2learn_reference as ref
import pytest
import tables


def test_each_estimator_runs_its_own_configs_and_protonet_each_network():
  cells = ref.cells(['5w1s', '60w5s5q'], ['maml', 'protonet'], ['maxpool', 'strided'])
  assert cells == [
    ('5w1s', 'maml', 'strided'),
    ('60w5s5q', 'protonet', 'maxpool'),
    ('60w5s5q', 'protonet', 'strided'),
  ]
  assert ref.cells(['60w5s5q'], ['fomaml'], ['maxpool']) == []
  assert ref.jmeta_cell('protonet', '60w5s5q', 'maxpool', 1)['batching'] == 'vmap'
  assert ref.jmeta_cell('maml', '5w1s', 'strided', 2)['batching'] == 'map'


def test_bad_flags_are_refused():
  with pytest.raises(SystemExit):
    ref.main(['--variants', 'resnet'])
  with pytest.raises(SystemExit):
    ref.main(['--estimators', 'fomaml', '--configs', '60w5s5q'])


def _row(impl, estimator, variant, round_, step_s, rss, **extra):
  config = '60w5s5q' if estimator == 'protonet' else '5w1s'
  row = {
    'impl': impl,
    'estimator': estimator,
    'config': config,
    'round': round_,
    'step_s': step_s,
    'peak_rss_mib': rss,
    **extra,
  }
  if variant is not None:
    row['variant'] = variant
  if impl == 'jmeta':
    row.update(devices=1, batching='vmap', conv_impl='patches')
  else:
    row.update(first_step_s=2 * step_s, tasks_per_s=1 / step_s)
  return row


def test_comparison_pairs_rounds_within_each_network():
  results = []
  # learn2learn / jmeta step times per round: maxpool 0.6/0.3 and 0.9/0.3 (speedups
  # 2 and 3), strided 0.1/0.2 and 0.1/0.4 (0.5 and 0.25).
  for r, (l2l_max, ours_max, l2l_str, ours_str) in enumerate(
    [(0.6, 0.3, 0.1, 0.2), (0.9, 0.3, 0.1, 0.4)]
  ):
    results += [
      _row('learn2learn', 'protonet', 'maxpool', r, l2l_max, 1000 + r),
      _row('jmeta', 'protonet', 'maxpool', r, ours_max, 1500),
      _row('learn2learn', 'protonet', 'strided', r, l2l_str, 600),
      _row('jmeta', 'protonet', 'strided', r, ours_str, 500 + r),
    ]
  # A report from before the ProtoNet cells: no variant, MAML's strided Conv4.
  results += [
    _row('learn2learn', 'maml', None, 0, 0.5, 400),
    {**_row('jmeta', 'maml', None, 0, 0.25, 700), 'batching': 'map'},
  ]
  report = {
    'rounds': 2,
    'results': results,
    'versions': {'torch': 't', 'learn2learn': 'l'},
    'hardware': {'cpu_model': 'Some CPU', 'cpu_count': 2, 'python': '3.11'},
    'date': '2026-12-05T00:00:00+00:00',
    'command': 'python benchmarks/learn2learn_reference.py',
  }
  rows = {(r['estimator'], r['variant']): r for r in tables.comparison(report)}
  maxpool, strided = rows['protonet', 'maxpool'], rows['protonet', 'strided']
  assert maxpool['learn2learn_s'] == pytest.approx(0.75)
  assert maxpool['speedup'][1] == pytest.approx(2.5)
  assert maxpool['speedup_range'][1] == pytest.approx((2.0, 3.0))
  assert maxpool['learn2learn_rss_mib'] == 1001
  assert strided['speedup'][1] == pytest.approx(0.375)
  assert strided['jmeta'][1]['step_s'] == pytest.approx(0.3)
  assert strided['jmeta'][1]['peak_rss_mib'] == 501
  assert rows['maml', 'strided']['speedup'][1] == pytest.approx(2.0)
  # The README's rows name the network and the jmeta cell's own batching.
  text = tables.reference_table({}, report)
  assert (
    '| protonet | 60w5s5q | maxpool | 0.300 (vmap + patches) | 0.750 | 2.50x' in text
  )
  assert '| maml | 5w1s | strided | 0.250 (map + patches) | 0.500 | 2.00x' in text
  assert 'on Some CPU' in text
  report_text = ref.markdown(report)
  assert '| 1 | protonet | 60w5s5q | strided |' in report_text
  assert '| protonet | 60w5s5q | strided | 0.100 | 1 | 0.300 | 0.38x |' in report_text
