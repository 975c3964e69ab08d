"""The README's performance table is the committed benchmark report, not typed."""

import json
import pathlib
import statistics

import tables  # benchmarks/tables.py (conftest.py puts benchmarks/ on sys.path)

ROOT = pathlib.Path(__file__).parents[2]


def test_readme_table_is_generated_from_the_committed_report(tmp_path):
  report = json.loads((ROOT / 'benchmarks/results/cpu_meta_step.json').read_text())
  reference = json.loads((ROOT / 'benchmarks/results/cpu_learn2learn.json').read_text())
  readme = (ROOT / 'README.md').read_text()
  section = readme.split(tables.META_STEP_BEGIN, 1)[1].split(tables.META_STEP_END)[0]
  assert section == '\n' + tables.meta_step_table(report, reference)
  # Every timed cell of the report appears in the table with its step time.
  for r in report['results']:
    cell = (r['batching'], r['conv_impl'], tables.devices_of(r))
    if 'error' not in r and cell in tables.META_STEP_CELLS:
      assert f'{r["step_s"]:.3f}' in section
  # The learn2learn comparison: jmeta ran interleaved with learn2learn; each row is
  # the medians over rounds and the median of the per-round speedups.
  rows = [r for r in reference['results'] if 'error' not in r]
  jmeta_rows = [r for r in rows if r['impl'] == 'jmeta']
  assert jmeta_rows and reference['rounds'] > 1

  def cell(r):
    return (r['estimator'], r['config'], tables.variant_of(r))

  for key, devices in {(cell(r), r['devices']) for r in jmeta_rows}:
    ours = {
      r['round']: r for r in jmeta_rows if (cell(r), r['devices']) == (key, devices)
    }
    theirs = {
      r['round']: r['step_s']
      for r in rows
      if r['impl'] == 'learn2learn' and cell(r) == key
    }
    assert set(ours) == set(theirs) == set(range(reference['rounds']))
    speedup = statistics.median(theirs[k] / ours[k]['step_s'] for k in ours)
    setup = {f'{r["batching"]} + {r["conv_impl"]}' for r in ours.values()}
    assert len(setup) == 1
    row = (
      f'| {" | ".join(key)} | '
      f'{statistics.median(r["step_s"] for r in ours.values()):.3f} ('
      + setup.pop()
      + (f' on {devices} devices' if devices > 1 else '')
      + f') | {statistics.median(theirs.values()):.3f} | {speedup:.2f}x ('
    )
    assert row in section
  # Regenerating rewrites only the section, and refuses a file without markers.
  copy = tmp_path / 'README.md'
  copy.write_text(readme.replace(section, '\nstale\n'))
  tables.write_meta_step(str(copy), report, reference)
  assert copy.read_text() == readme
  bare = tmp_path / 'bare.md'
  bare.write_text('# no markers\n')
  try:
    tables.write_meta_step(str(bare), report)
  except ValueError as e:
    assert 'markers' in str(e)
  else:
    raise AssertionError('write_readme accepted a file without markers')
