"""Where the test suite's time goes: pytest's per-test durations, summed per file.

Reads the output of ``python -m pytest -n 2 -q --durations=0`` (setup, call and
teardown lines; the sum is worker time, not wall time, and under ``-n 2`` about
twice the wall time) and writes ``OUT.json`` and ``OUT.md``: every file's total
and share, and the slowest tests. Shares are what to read when the machine was
loaded; seconds only on an idle one.

  python -m pytest -n 2 -q --durations=0 | tee suite.log
  python benchmarks/suite_profile.py suite.log --out=benchmarks/results/cpu_suite_profile \
      --note='...what ran beside it...'

With ``--compile=DIR``, the output of the ``compile_profile`` plugin (run pytest
with ``-p compile_profile``; see that module), each file's row also gives its
seconds in XLA compiles and in JAX tracing and lowering, and a second table gives
the jitted functions that took the most compile seconds: how many distinct programs
(persistent-cache keys) each was compiled as, in how many test files, and the
seconds spent compiling a key that had been compiled before (by the other worker,
or too fast for the cache to keep).
"""

from __future__ import annotations

import argparse
import collections
import json
import pathlib
import re

LINE = re.compile(r'^([\d.]+)s (setup|call|teardown)\s+(\S+)')
SUMMARY = re.compile(r'^=*\s*(?:(\d+) failed, )?(\d+) passed.* in ([\d.]+)s')


def parse(text: str) -> dict:
  """``{'tests': {nodeid: seconds}, 'wall_seconds', 'passed', 'failed'}`` from a
  pytest log."""
  tests: dict[str, float] = collections.defaultdict(float)
  wall = passed = None
  failed = 0
  for line in text.splitlines():
    if m := LINE.match(line):
      tests[m.group(3)] += float(m.group(1))
    elif m := SUMMARY.match(line.strip()):
      failed, passed, wall = int(m.group(1) or 0), int(m.group(2)), float(m.group(3))
  if not tests:
    raise ValueError(
      'no duration lines found: run pytest with --durations=0 and pass its output.'
    )
  return {
    'tests': dict(tests),
    'wall_seconds': wall,
    'passed': passed,
    'failed': failed,
  }


def by_file(tests: dict[str, float]) -> list[tuple[str, float]]:
  files: dict[str, float] = collections.defaultdict(float)
  for node, seconds in tests.items():
    files[node.split('::')[0]] += seconds
  return sorted(files.items(), key=lambda kv: -kv[1])


def read_compile(folder: pathlib.Path) -> dict[str, dict[str, float]]:
  """The ``compile_profile`` plugin's files in ``folder``, merged over workers."""
  merged: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
  files = sorted(folder.glob('compile_*.json'))
  if not files:
    raise ValueError(
      f'no compile_*.json in {folder}: run pytest with -p compile_profile and '
      'JMETA_COMPILE_PROFILE set to that folder.'
    )
  for f in files:
    for node, sums in json.loads(f.read_text()).items():
      merged[node].update(sums)
  return {node: dict(sums) for node, sums in merged.items()}


def read_programs(folder: pathlib.Path) -> list[list]:
  """The plugin's ``programs_*.json`` rows, over all workers."""
  rows = []
  for f in sorted(folder.glob('programs_*.json')):
    rows += json.loads(f.read_text())
  return rows


def programs_by_function(rows: list[list]) -> list[dict]:
  """Per jitted function name, most compile seconds first: ``seconds``,
  ``compiles``, ``programs`` (distinct keys compiled), ``files``, ``hits``, and
  ``repeated`` (seconds compiling a key compiled before)."""
  out: dict[str, dict] = {}
  seen: set = set()
  for test, name, key, seconds, outcome in rows:
    f = out.setdefault(
      name,
      {
        'function': name,
        'seconds': 0.0,
        'compiles': 0,
        'hits': 0,
        'repeated': 0.0,
        'keys': set(),
        'files': set(),
      },
    )
    f['files'].add(test.split('::')[0])
    if outcome == 'hit':
      f['hits'] += 1
      continue
    f['seconds'] += seconds
    f['compiles'] += 1
    if key is not None and key in seen:
      f['repeated'] += seconds
    seen.add(key)
    f['keys'].add(key)
  for f in out.values():
    f['programs'] = len(f.pop('keys'))
    f['files'] = len(f['files'])
  return sorted(out.values(), key=lambda f: -f['seconds'])


def compile_by_file(compile_: dict[str, dict[str, float]]) -> dict[str, dict]:
  """Per test file: ``compile`` and ``trace`` + ``lower`` seconds, ``compiles``."""
  files: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
  for node, sums in compile_.items():
    files[node.split('::')[0]].update(sums)
  return {name: dict(sums) for name, sums in files.items()}


def markdown(
  profile: dict,
  note: str,
  top: int,
  compile_: dict | None = None,
  functions: list[dict] | None = None,
) -> str:
  tests = profile['tests']
  total = sum(tests.values())
  lines = [
    '# Test-suite profile',
    '',
    f'{note}',
    '',
    f'{profile["passed"]} tests passed'
    + (f' and {profile["failed"]} failed' if profile.get('failed') else '')
    + f' in {profile["wall_seconds"]:.0f} s of wall time; '
    f'the durations below add up to {total:.0f} s of worker time.',
  ]
  files = compile_by_file(compile_) if compile_ is not None else None
  if files is not None:
    sums = collections.Counter()
    for node, s in compile_.items():
      if node in tests:  # the plugin also sees work outside tests
        sums.update(s)
    traced = sums['trace'] + sums['lower']
    lines.append(
      f'Of that worker time, {sums["compile"]:.0f} s ({100 * sums["compile"] / total:.0f}%) '
      f'went to {sums["compiles"]:.0f} XLA compiles and {traced:.0f} s '
      f'({100 * traced / total:.0f}%) to JAX tracing and lowering, in the test '
      'processes (not counting the subprocesses some tests start); '
      f'{sums["hits"]:.0f} executables came from the persistent cache instead, '
      f'in {sums["hit"]:.0f} s.'
    )
  lines += ['']
  if files is None:
    lines += ['| file | seconds | share | cumulative |', '| --- | --- | --- | --- |']
  else:
    lines += [
      '| file | seconds | share | cumulative | XLA compiles | compile s | trace + lower s |',
      '| --- | --- | --- | --- | --- | --- | --- |',
    ]
  cumulative = 0.0
  for name, seconds in by_file(tests)[:top]:
    cumulative += seconds
    row = (
      f'| `{name}` | {seconds:.0f} | {100 * seconds / total:.1f}% '
      f'| {100 * cumulative / total:.1f}% |'
    )
    if files is not None:
      s = files.get(name, {})
      row += (
        f' {s.get("compiles", 0):.0f} | {s.get("compile", 0):.0f} '
        f'| {s.get("trace", 0) + s.get("lower", 0):.0f} |'
      )
    lines.append(row)
  lines += [
    '',
    '| slowest tests (setup + call + teardown) | seconds |',
    '| --- | --- |',
  ]
  for node, seconds in sorted(tests.items(), key=lambda kv: -kv[1])[:top]:
    lines.append(f'| `{node}` | {seconds:.0f} |')
  if functions:
    lines += [
      '',
      '| jitted function | compile s | compiles | distinct programs | test files '
      '| cache hits | s compiling a key compiled before |',
      '| --- | --- | --- | --- | --- | --- | --- |',
    ]
    for f in functions[:top]:
      lines.append(
        f'| `{f["function"]}` | {f["seconds"]:.0f} | {f["compiles"]} | {f["programs"]} '
        f'| {f["files"]} | {f["hits"]} | {f["repeated"]:.0f} |'
      )
  return '\n'.join(lines) + '\n'


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('log', type=pathlib.Path, help='pytest output with --durations=0')
  p.add_argument('--out', type=pathlib.Path, required=True, help='OUT.json, OUT.md')
  p.add_argument('--note', default='', help='machine and what ran beside the suite')
  p.add_argument('--top', type=int, default=30)
  p.add_argument(
    '--compile', type=pathlib.Path, help="the compile_profile plugin's folder"
  )
  args = p.parse_args(argv)
  profile = parse(args.log.read_text())
  compile_ = read_compile(args.compile) if args.compile else None
  record = {**profile, 'note': args.note, 'by_file': by_file(profile['tests'])}
  functions = None
  if compile_ is not None:
    record['compile_by_file'] = compile_by_file(compile_)
    functions = programs_by_function(read_programs(args.compile))
    record['compile_by_function'] = functions
  args.out.with_suffix('.json').write_text(json.dumps(record, indent=1) + '\n')
  args.out.with_suffix('.md').write_text(
    markdown(profile, args.note, args.top, compile_, functions)
  )


if __name__ == '__main__':
  main()
