"""The README's code examples run as written, and its prose numbers match their files."""

import json
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
