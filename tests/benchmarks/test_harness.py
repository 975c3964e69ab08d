"""harness.comparison_main: the shared main of the interleaved comparisons."""

import json

import harness


def test_comparison_main_writes_the_report_and_its_heading(tmp_path):
  seen = {}

  def run(args):
    seen['args'] = args
    return [{'step_s': 0.5, 'setting': 'a', 'round': 0}]

  harness.comparison_main(
    __file__,
    'A title',
    '; some detail.',
    run,
    lambda results: f'| {len(results)} row |\n',
    'thing',
    ['--rounds', '2', '--repeats', '4', '--out', str(tmp_path), '--note', 'Idle.'],
  )
  assert (seen['args'].rounds, seen['args'].repeats) == (2, 4)
  backend = harness.hardware()['backend']
  report = json.loads((tmp_path / f'{backend}_thing.json').read_text())
  assert report['results'] == [{'step_s': 0.5, 'setting': 'a', 'round': 0}]
  assert report['note'] == 'Idle.'
  assert len(report['commit'].split('+')[0]) == 40
  text = (tmp_path / f'{backend}_thing.md').read_text()
  assert text.startswith('# A title\n\n`python ')
  assert (
    'Median over 2 interleaved rounds of the per-round median of 4 steps; some '
    'detail. Idle.\n\n| 1 row |\n'
  ) in text
