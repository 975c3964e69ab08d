"""Where the test suite's time goes: pytest's per-test durations, summed per file.

Reads the output of ``python -m pytest -n 2 -q --durations=0`` (setup, call and
teardown lines; the sum is worker time, not wall time, and under ``-n 2`` about
twice the wall time) and writes ``OUT.json`` and ``OUT.md``: every file's total
and share, and the slowest tests. Shares are what to read when the machine was
loaded; seconds only on an idle one.

  python -m pytest -n 2 -q --durations=0 | tee suite.log
  python benchmarks/suite_profile.py suite.log --out=benchmarks/results/cpu_suite_profile \
      --note='...what ran beside it...'
"""

from __future__ import annotations

import argparse
import collections
import json
import pathlib
import re

LINE = re.compile(r'^([\d.]+)s (setup|call|teardown)\s+(\S+)')
SUMMARY = re.compile(r'^=*\s*(\d+) passed.* in ([\d.]+)s')


def parse(text: str) -> dict:
  """``{'tests': {nodeid: seconds}, 'wall_seconds', 'passed'}`` from a pytest log."""
  tests: dict[str, float] = collections.defaultdict(float)
  wall = passed = None
  for line in text.splitlines():
    if m := LINE.match(line):
      tests[m.group(3)] += float(m.group(1))
    elif m := SUMMARY.match(line.strip()):
      passed, wall = int(m.group(1)), float(m.group(2))
  if not tests:
    raise ValueError(
      'no duration lines found: run pytest with --durations=0 and pass its output.'
    )
  return {'tests': dict(tests), 'wall_seconds': wall, 'passed': passed}


def by_file(tests: dict[str, float]) -> list[tuple[str, float]]:
  files: dict[str, float] = collections.defaultdict(float)
  for node, seconds in tests.items():
    files[node.split('::')[0]] += seconds
  return sorted(files.items(), key=lambda kv: -kv[1])


def markdown(profile: dict, note: str, top: int) -> str:
  tests = profile['tests']
  total = sum(tests.values())
  lines = [
    '# Test-suite profile',
    '',
    f'{note}',
    '',
    f'{profile["passed"]} tests passed in {profile["wall_seconds"]:.0f} s of wall time; '
    f'the durations below add up to {total:.0f} s of worker time.',
    '',
    '| file | seconds | share | cumulative |',
    '| --- | --- | --- | --- |',
  ]
  cumulative = 0.0
  for name, seconds in by_file(tests)[:top]:
    cumulative += seconds
    lines.append(
      f'| `{name}` | {seconds:.0f} | {100 * seconds / total:.1f}% '
      f'| {100 * cumulative / total:.1f}% |'
    )
  lines += [
    '',
    '| slowest tests (setup + call + teardown) | seconds |',
    '| --- | --- |',
  ]
  for node, seconds in sorted(tests.items(), key=lambda kv: -kv[1])[:top]:
    lines.append(f'| `{node}` | {seconds:.0f} |')
  return '\n'.join(lines) + '\n'


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('log', type=pathlib.Path, help='pytest output with --durations=0')
  p.add_argument('--out', type=pathlib.Path, required=True, help='OUT.json, OUT.md')
  p.add_argument('--note', default='', help='machine and what ran beside the suite')
  p.add_argument('--top', type=int, default=30)
  args = p.parse_args(argv)
  profile = parse(args.log.read_text())
  by = by_file(profile['tests'])
  args.out.with_suffix('.json').write_text(
    json.dumps({**profile, 'note': args.note, 'by_file': by}, indent=1) + '\n'
  )
  args.out.with_suffix('.md').write_text(markdown(profile, args.note, args.top))


if __name__ == '__main__':
  main()
