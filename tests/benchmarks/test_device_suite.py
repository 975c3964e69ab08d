"""``benchmarks/device_suite.sh`` runs where no test does: on a GPU lent for a few
minutes per task. Each script it calls is handed its arguments here, through the
script's own parser, so that a renamed estimator or flag fails in CI and not in the
device's budget (the first call, on 2026-12-04, lost its main step to ``maml++``)."""

import importlib
import pathlib
import shlex

import pytest

ROOT = pathlib.Path(__file__).parents[2]
# The shell variables the suite passes on, with values as it sets them.
VARIABLES = {'$out': '/tmp/out', '$nominal': '494.7'}


def invocations(script: str) -> list[tuple[str, list[str]]]:
  """(script module, its arguments) for each ``benchmarks/<name>.py`` call."""
  text = (ROOT / 'benchmarks' / script).read_text().replace('\\\n', ' ')
  calls = []
  for line in text.splitlines():
    if line.lstrip().startswith('#'):
      continue
    words = shlex.split(line)
    for i, word in enumerate(words):
      if word.startswith('benchmarks/') and word.endswith('.py'):
        args = [VARIABLES.get(w, w) for w in words[i + 1 :]]
        calls.append((pathlib.Path(word).stem, args))
  return calls


def test_the_suite_calls_the_three_scripts():
  assert [name for name, _ in invocations('device_suite.sh')] == [
    'meta_step',
    'meta_step',
    'flops',
    'dispatch',
  ]


@pytest.mark.parametrize(
  'name,args',
  invocations('device_suite.sh'),
  ids=lambda v: v if isinstance(v, str) else None,
)
def test_each_call_parses(name, args):
  module = importlib.import_module(name)
  parsed = module.parse_args(args)
  assert parsed.out == '/tmp/out'


def test_a_renamed_estimator_is_caught():
  meta_step = importlib.import_module('meta_step')
  with pytest.raises(SystemExit):
    meta_step.parse_args(['--estimators', 'maml++'])
  flops = importlib.import_module('flops')
  with pytest.raises(SystemExit):
    flops.parse_args(['--cells', 'maml++:5w1s:auto:auto'])
