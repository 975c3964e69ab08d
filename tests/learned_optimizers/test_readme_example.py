"""The README's learned-optimizer example runs as written."""

import pathlib
import re

import optax

README = pathlib.Path(__file__).parents[2] / 'README.md'


def test_readme_learned_optimizer_example_runs():
  blocks = re.findall(r'```python\n(.*?)```', README.read_text(), re.S)
  code = next(b for b in blocks if 'learned_optimizers as lopt' in b)
  namespace = {}
  exec(compile(code, str(README), 'exec'), namespace)  # noqa: S102
  assert int(namespace['state'].step) == 1
  assert isinstance(namespace['learned'], optax.GradientTransformation)
  assert float(namespace['metrics']['loss']) > 0
