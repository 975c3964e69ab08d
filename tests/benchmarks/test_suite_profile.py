"""suite_profile.py sums pytest's per-phase durations per test and per file."""

import json

import pytest
import suite_profile

LOG = """........ [100%]
============================= slowest durations ==============================
12.50s call     tests/a/test_x.py::test_one[p]
2.00s setup    tests/a/test_x.py::test_one[p]
0.25s teardown tests/a/test_x.py::test_one[p]
7.00s call     tests/b/test_y.py::test_two
3.00s call     tests/a/test_x.py::test_three
(12 durations < 0.005s hidden.  Use -vv to show these durations.)
42 passed, 3 warnings in 30.25s (0:00:30)
"""


def test_phases_add_up_per_test_and_per_file(tmp_path):
  profile = suite_profile.parse(LOG)
  assert profile['tests'] == {
    'tests/a/test_x.py::test_one[p]': 14.75,
    'tests/b/test_y.py::test_two': 7.0,
    'tests/a/test_x.py::test_three': 3.0,
  }
  assert (profile['passed'], profile['wall_seconds']) == (42, 30.25)
  assert suite_profile.by_file(profile['tests']) == [
    ('tests/a/test_x.py', 17.75),
    ('tests/b/test_y.py', 7.0),
  ]
  log = tmp_path / 'suite.log'
  log.write_text(LOG)
  suite_profile.main([str(log), f'--out={tmp_path / "p"}', '--note=idle'])
  md = (tmp_path / 'p.md').read_text()
  # 17.75 of 24.75 s: 71.7%; both files: 100%.
  assert '| `tests/a/test_x.py` | 18 | 71.7% | 71.7% |' in md
  assert '| `tests/b/test_y.py` | 7 | 28.3% | 100.0% |' in md
  assert json.loads((tmp_path / 'p.json').read_text())['note'] == 'idle'


def test_a_log_without_durations_is_refused():
  with pytest.raises(ValueError, match='run pytest with --durations=0'):
    suite_profile.parse('42 passed in 3.0s\n')
