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


def test_failures_are_counted_beside_the_passes():
  profile = suite_profile.parse(LOG.replace('42 passed', '2 failed, 40 passed'))
  assert (profile['failed'], profile['passed'], profile['wall_seconds']) == (
    2,
    40,
    30.25,
  )
  md = suite_profile.markdown(profile, 'note', top=3)
  assert '40 tests passed and 2 failed in 30 s of wall time' in md


def test_a_log_without_durations_is_refused():
  with pytest.raises(ValueError, match='run pytest with --durations=0'):
    suite_profile.parse('42 passed in 3.0s\n')


def test_compile_seconds_are_merged_over_workers_and_summed_per_file(tmp_path):
  log = tmp_path / 'suite.log'
  log.write_text(LOG)
  folder = tmp_path / 'compile'
  folder.mkdir()
  one = 'tests/a/test_x.py::test_one[p]'
  (folder / 'compile_gw0.json').write_text(
    json.dumps(
      {
        one: {'compile': 6.0, 'trace': 1.0, 'lower': 0.5, 'compiles': 3},
        '<outside tests>': {'compile': 100.0, 'compiles': 9},
      }
    )
  )
  (folder / 'compile_gw1.json').write_text(
    json.dumps(
      {
        'tests/a/test_x.py::test_three': {'compile': 2.0, 'trace': 0.25, 'compiles': 1},
        'tests/b/test_y.py::test_two': {'compile': 1.5, 'lower': 0.25, 'compiles': 2},
      }
    )
  )
  step, ev = 'tests/a/test_x.py::test_one[p]', 'tests/b/test_y.py::test_two'
  (folder / 'programs_gw0.json').write_text(
    json.dumps(
      [
        [step, 'jit_step', 'jit_step-1', 4.0, 'compile'],
        [step, 'jit_step', 'jit_step-2', 2.0, 'compile'],
        [step, 'jit_eval', 'jit_eval-1', 0.5, 'compile'],
      ]
    )
  )
  (folder / 'programs_gw1.json').write_text(
    json.dumps(
      [
        [ev, 'jit_step', 'jit_step-1', 0.25, 'hit'],
        [ev, 'jit_step', 'jit_step-2', 1.5, 'compile'],  # the other worker's race
        [ev, 'jit_eval', 'jit_eval-9', 1.0, 'compile'],
        [ev, 'jit_small', 'jit_small-1', 0.125, 'compile'],
      ]
    )
  )
  suite_profile.main(
    [
      str(log),
      f'--out={tmp_path / "p"}',
      f'--compile={folder}',
    ]
  )
  md = (tmp_path / 'p.md').read_text()
  # File a: 3 + 1 compiles, 6 + 2 s, 1 + 0.5 + 0.25 s traced and lowered.
  assert '| `tests/a/test_x.py` | 18 | 71.7% | 71.7% | 4 | 8 | 2 |' in md
  assert '| `tests/b/test_y.py` | 7 | 28.3% | 100.0% | 2 | 2 | 0 |' in md
  # 9.5 of 24.75 s in 6 compiles; the work outside tests is left out.
  assert '10 s (38%) went to 6 XLA compiles and 2 s (8%)' in md
  by = json.loads((tmp_path / 'p.json').read_text())['compile_by_file']
  assert by['tests/a/test_x.py']['compiles'] == 4
  # jit_step: 4 + 2 + 1.5 s in 3 compiles of 2 keys, in 2 files, one hit; key 2
  # compiled twice, so its second 1.5 s were a repeat. Most seconds first.
  assert md.index('| `jit_step` | 8 | 3 | 2 | 2 | 1 | 2 |') < md.index(
    '| `jit_eval` | 2 | 2 | 2 | 2 | 0 | 0 |'
  )
  with pytest.raises(ValueError, match='-p compile_profile'):
    suite_profile.read_compile(tmp_path)


def test_the_plugin_charges_a_compile_to_the_test_that_ran_it():
  import compile_profile
  import jax
  import jax.numpy as jnp

  node = 'tests/benchmarks/test_suite_profile.py::fake'
  x = jnp.arange(7.0)
  with compile_profile.charging(node):
    # A function of its own: nothing cached can serve it.
    jax.jit(lambda x: jnp.sin(x) * 3.25 + 0.125)(x).block_until_ready()
  got = compile_profile.totals()[node]
  assert got['compiles'] == 1
  assert got['compile'] > 0 and got['trace'] > 0 and got['lower'] > 0
  assert [r[1] for r in compile_profile.programs() if r[0] == node] == ['jit__lambda']


def test_the_plugin_tells_a_persistent_cache_hit_from_a_compile():
  import compile_profile
  import jax
  import jax.numpy as jnp

  node = 'tests/benchmarks/test_suite_profile.py::hit'
  x = jnp.arange(5.0)
  before = jax.config.jax_persistent_cache_min_compile_time_secs
  # The suite's persistent cache (tests/conftest.py), keeping even this program.
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
  try:
    with compile_profile.charging(node):
      # Two functions of one program, new to this run: the second is read back.
      for _ in range(2):
        jax.jit(lambda x: jnp.cos(x) * 1.75 - 0.5)(x).block_until_ready()
  finally:
    jax.config.update('jax_persistent_cache_min_compile_time_secs', before)
  rows = [r for r in compile_profile.programs() if r[0] == node]
  assert [(r[1], r[4]) for r in rows] == [
    ('jit__lambda', 'compile'),
    ('jit__lambda', 'hit'),
  ]
  assert rows[0][2] == rows[1][2] and rows[0][2].startswith('jit__lambda-')
  got = compile_profile.totals()[node]
  assert (got['compiles'], got['hits']) == (1, 1)
