"""The README's performance table is the committed benchmark report, not typed."""

import importlib.util
import json
import pathlib

ROOT = pathlib.Path(__file__).parents[2]


def _meta_step():
  spec = importlib.util.spec_from_file_location(
    'meta_step', ROOT / 'benchmarks' / 'meta_step.py'
  )
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_readme_table_is_generated_from_the_committed_report(tmp_path):
  meta_step = _meta_step()
  report = json.loads((ROOT / 'benchmarks/results/cpu_meta_step.json').read_text())
  reference = json.loads((ROOT / 'benchmarks/results/cpu_learn2learn.json').read_text())
  readme = (ROOT / 'README.md').read_text()
  section = readme.split(meta_step.README_BEGIN, 1)[1].split(meta_step.README_END)[0]
  assert section == '\n' + meta_step.readme_table(report, reference)
  # Every timed cell of the report appears in the table with its step time.
  for r in report['results']:
    if 'error' not in r and (r['batching'], r['conv_impl']) in meta_step.README_CELLS:
      assert f'{r["step_s"]:.3f}' in section
  # The learn2learn comparison divides its step times by jmeta's fastest.
  for ref in reference['results']:
    ours = meta_step.fastest(report['results'], ref['estimator'], ref['config'])
    row = f'| {ref["estimator"]} | {ref["config"]} | {ours["step_s"]:.3f} '
    assert row in section
    assert f'{ref["step_s"] / ours["step_s"]:.2f}x' in section
  # Regenerating rewrites only the section, and refuses a file without markers.
  copy = tmp_path / 'README.md'
  copy.write_text(readme.replace(section, '\nstale\n'))
  meta_step.write_readme(str(copy), report, reference)
  assert copy.read_text() == readme
  bare = tmp_path / 'bare.md'
  bare.write_text('# no markers\n')
  try:
    meta_step.write_readme(str(bare), report)
  except ValueError as e:
    assert 'markers' in str(e)
  else:
    raise AssertionError('write_readme accepted a file without markers')
