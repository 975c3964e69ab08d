"""The test tree's layout: pytest imports test files by basename (no packages)."""

import ast
import collections
import pathlib

TESTS = pathlib.Path(__file__).parent


def test_no_two_test_files_share_a_basename():
  """Two test_x.py in different folders make pytest refuse to collect one of them."""
  names = collections.Counter(p.name for p in TESTS.rglob('test_*.py'))
  assert [name for name, n in names.items() if n > 1] == []


def _module_fixtures(tree: ast.Module) -> set[str]:
  """Names of the fixtures a module defines with ``scope='module'``."""
  names = set()
  for node in tree.body:
    if isinstance(node, ast.FunctionDef):
      for dec in node.decorator_list:
        if isinstance(dec, ast.Call) and any(
          k.arg == 'scope' and getattr(k.value, 'value', None) == 'module'
          for k in dec.keywords
        ):
          names.add(node.name)
  return names


def _xdist_group(node: ast.FunctionDef) -> str | None:
  for dec in node.decorator_list:
    if (
      isinstance(dec, ast.Call)
      and ast.unparse(dec.func) == 'pytest.mark.xdist_group'
      and dec.args
    ):
      return ast.literal_eval(dec.args[0])
  return None


def test_tests_that_share_a_module_scoped_run_share_an_xdist_group():
  """Under ``pytest -n`` (with ``--dist loadgroup``, pyproject.toml) a module-scoped
  fixture runs once per worker that runs a test reading it: a tiny training run
  computed twice. Each test reading one must carry ``xdist_group`` and all tests
  reading the same fixture the same group."""
  missing, groups = [], collections.defaultdict(set)
  for path in sorted(TESTS.rglob('test_*.py')):
    tree = ast.parse(path.read_text())
    shared = _module_fixtures(tree)
    for node in tree.body:
      if not (isinstance(node, ast.FunctionDef) and node.name.startswith('test')):
        continue
      for fixture in shared & {a.arg for a in node.args.args}:
        group = _xdist_group(node)
        if group is None:
          missing.append(f'{path.relative_to(TESTS)}::{node.name} ({fixture})')
        groups[(path.name, fixture)].add(group)
  assert missing == []
  assert {k: g for k, g in groups.items() if len(g) > 1} == {}
  assert len(groups) >= 10  # the checker finds the fixtures it is about
