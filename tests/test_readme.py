"""The README's code examples run as written, and its prose numbers match their files."""

import json
import math
import pathlib
import re

import jax

README = pathlib.Path(__file__).parents[1] / 'README.md'


def test_readme_example_runs_and_takes_one_meta_step():
  code = re.search(r'```python\n(.*?)```', README.read_text(), re.S).group(1)
  namespace = {}
  exec(compile(code, str(README), 'exec'), namespace)  # noqa: S102
  assert int(namespace['state'].step) == 1
  assert jax.tree.structure(namespace['grads']) == jax.tree.structure(
    namespace['params']
  )


def test_readme_metric_learner_example_runs():
  blocks = re.findall(r'```python\n(.*?)```', README.read_text(), re.S)
  code = next(b for b in blocks if 'metric.prototypical' in b)
  namespace = {}
  exec(compile(code, str(README), 'exec'), namespace)  # noqa: S102
  assert int(namespace['state'].step) == 1
  assert namespace['accuracy'].shape == (4,)


def _results(name):
  path = pathlib.Path(__file__).parents[1] / 'benchmarks' / 'results' / name
  return json.loads(path.read_text())['results']


def test_readme_performance_prose_matches_the_benchmark_files():
  text = README.read_text()
  steps = [
    r['step_s']
    for r in _results('cpu_learn2learn.json')
    if (r['impl'], r['estimator'], r['config']) == ('learn2learn', 'fomaml', '5w1s')
  ]
  lo, hi = re.search(
    r'first-order 5w1s step took ([\d.]+) s in one round of `cpu_learn2learn.md` '
    r'and ([\d.]+) s\s+in another',
    text,
  ).groups()
  assert (lo, hi) == (f'{min(steps):.2f}', f'{max(steps):.2f}')
  cells = {
    r['conv_impl']: r
    for r in _results('cpu_meta_step.json')
    if (r['estimator'], r['config'], r['batching']) == ('protonet', '60w5s5q', 'vmap')
  }
  speedup, memory = re.search(
    r'is ([\d.]+)x faster with patches than with XLA.s convolution,\s+'
    r'at ([\d.]+)x the peak memory',
    text,
  ).groups()
  patches, xla = cells['patches'], cells['xla']
  assert speedup == f'{xla["step_s"] / patches["step_s"]:.1f}'
  assert memory == f'{patches["peak_rss_mib"] / xla["peak_rss_mib"]:.1f}'


def _report(name):
  path = pathlib.Path(__file__).parents[1] / 'benchmarks' / 'results' / name
  return json.loads(path.read_text())


def test_readme_protonet_speed_prose_matches_the_benchmark_files():
  import statistics

  text = ' '.join(README.read_text().split())
  reference = _report('cpu_learn2learn_protonet.json')
  times, ratios = {}, {}
  for variant in ('maxpool', 'strided'):
    rows = [
      r for r in reference['results'] if r['variant'] == variant and 'error' not in r
    ]
    by_round = {
      impl: {r['round']: r['step_s'] for r in rows if r['impl'] == impl}
      for impl in ('learn2learn', 'jmeta')
    }
    assert set(by_round['jmeta']) == set(range(reference['rounds'])) == {0, 1, 2}
    times[variant] = {
      impl: f'{statistics.median(steps.values()):.3f}'
      for impl, steps in by_round.items()
    }
    ours, theirs = by_round['jmeta'], by_round['learn2learn']
    ratios[variant] = f'{statistics.median(theirs[k] / ours[k] for k in ours):.2f}'
  m = re.search(
    r'took ([\d.]+) s with the max-pool Conv4 and ([\d.]+) s with the strided one\. '
    r"jmeta's ProtoNet step \(vmap \+ patches, as its configs train\) took ([\d.]+) s "
    r'and ([\d.]+) s, so jmeta runs at ([\d.]+)x and ([\d.]+)x',
    text,
  )
  assert m.groups() == (
    times['maxpool']['learn2learn'],
    times['strided']['learn2learn'],
    times['maxpool']['jmeta'],
    times['strided']['jmeta'],
    ratios['maxpool'],
    ratios['strided'],
  )
  assert 'target of 1.5x faster is not met' in text
  assert max(float(r) for r in ratios.values()) < 1.5
  profile = _report('cpu_profile_protonet_60w5s5q_maxpool.json')
  total = sum(op['ms_per_step'] for op in profile['ops'])

  def share(kind):
    ms = sum(o['ms_per_step'] for o in profile['ops'] if o['kind'] == kind)
    return f'{100 * ms / total:.0f}%'

  assert (
    f'{share("elementwise or reduction fusion")} of the max-pool step is elementwise '
    f'and reduction fusions' in text
  )
  assert (
    f'{share("matmul")} matmuls, and {share("concatenate (patches)")} building' in text
  )
  sizes = [
    math.prod(int(d) for d in re.findall(r'\d+', o['shape'][3:])) * 4 / 1e6
    for o in profile['ops']
    if o['kind'] == 'concatenate (patches)'
  ]
  size = max(sizes)
  assert f'a concatenate of up to {size:.0f} MB per block' in text
  per_layer = _report('cpu_conv_impl_per_layer.json')['results']

  def median(setting):
    return statistics.median(
      r['step_s']
      for r in per_layer
      if (r['estimator'], r['variant'], r['setting'])
      == ('protonet', 'maxpool', setting)
    )

  ratio = median('xla first block') / median('patches')
  assert f'gave {ratio:.2f}x the step time of patches everywhere' in text
  flops = _report('xeon/cpu_flops.json')
  peak = flops['peak']['flop_per_s']
  cells = {r['estimator']: r for r in flops['results']}

  def of_peak(name):
    return f'{100 * cells[name]["achieved_flop_per_s"] / peak:.0f}%'

  assert (
    f"ProtoNet's step at {cells['protonet']['achieved_flop_per_s'] / 1e9:.1f} GFLOP/s "
    f'of matmuls, {of_peak("protonet")} of the measured 2048x2048 matmul rate '
    f'({peak / 1e9:.1f} GFLOP/s), and the 5w1s steps of MAML and first-order MAML at '
    f'{of_peak("maml")} and {of_peak("fomaml")}'
  ) in text
  assert max(cells[n]['achieved_flop_per_s'] / peak for n in cells) < 0.4


def _train_accuracy(run, step, key='train_accuracy'):
  path = pathlib.Path(__file__).parents[1] / 'results' / 'omniglot' / run
  for line in (path / 'metrics.jsonl').open():
    record = json.loads(line)
    if record['step'] == step:
      return f'{record[key]:.2f}'
  raise AssertionError(f'{run} logged no step {step}')


def test_readme_imaml_prose_matches_the_logs():
  text = ' '.join(README.read_text().split())
  imaml, maml_100, maml_1000 = re.search(
    r'its training accuracy at iteration 1,000 \(([\d.]+), see its `metrics.jsonl`\) '
    r"is about MAML's at 100 \(([\d.]+)\), and MAML's at 1,000 is ([\d.]+)\.",
    text,
  ).groups()
  assert imaml == _train_accuracy('imaml_5w1s', 1000)
  assert maml_100 == _train_accuracy('maml_5w1s', 100)
  assert maml_1000 == _train_accuracy('maml_5w1s', 1000)
  train, val = re.search(
    r'its 1,000-iteration 20w1s run ends with training accuracy ([\d.]+) and '
    r'validation ([\d.]+)',
    text,
  ).groups()
  assert train == _train_accuracy('imaml_20w1s', 1000)
  assert val == _train_accuracy('imaml_20w1s', 1000, 'val_accuracy')


def test_every_test_the_readme_cites_exists():
  # `tests/x.py::name`, then `::other` for another test of the same file.
  readme = README.read_text()
  cited, missing, current = 0, [], None
  for m in re.finditer(r'`(tests/[\w/]+\.py)?(?:::(\w+)(\[[^\]`]*\])?)?`', readme):
    current = m.group(1) or current
    if m.group(2) is None:
      continue
    cited += 1
    source = (README.parent / current).read_text() if current else ''
    if not re.search(rf'^def {m.group(2)}\(', source, re.MULTILINE):
      missing.append(f'{current}::{m.group(2)}')
  assert cited >= 40, cited
  assert missing == [], 'the README cites tests that do not exist: ' + str(missing)
