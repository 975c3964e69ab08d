"""The test tree's layout: pytest imports test files by basename (no packages)."""

import collections
import pathlib

TESTS = pathlib.Path(__file__).parent


def test_no_two_test_files_share_a_basename():
  """Two test_x.py in different folders make pytest refuse to collect one of them."""
  names = collections.Counter(p.name for p in TESTS.rglob('test_*.py'))
  assert [name for name, n in names.items() if n > 1] == []
