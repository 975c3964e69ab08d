"""The README's code example runs as written."""

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
