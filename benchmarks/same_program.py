"""Does a change compile to the same programs? XLA's optimized HLO at two commits.

For each of ``cpu_redesign.py``'s cells (MAML, first-order MAML and Reptile at 5w1s
and 20w1s, ProtoNet at 60w5s5q; the library's CPU defaults), runs the cell's
``benchmarks/meta_step.py`` once at each commit, each in a detached git worktree
with its own ``jmeta`` first on ``PYTHONPATH``, under
``XLA_FLAGS=--xla_dump_to=... --xla_dump_hlo_as_text``, and compares every module
XLA compiled, after optimization, with what only names source locations removed:
instruction ``metadata``, the file, function and stack-frame tables, and the module's
name. Nothing is timed. Identical programs compiled by the same XLA do the same
work, so a timing measured at one commit holds at the other, whatever else the
machine is running; on a machine too noisy to time a 5% difference this is the
check that can still be made.

  python benchmarks/same_program.py --before 466734e [--after HEAD]

Writes ``<backend>_same_program.json`` and ``.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

import cpu_redesign
import harness

_METADATA = re.compile(r', metadata=\{[^}]*\}')
_TABLE_HEADER = re.compile(r'^(FileNames|FunctionNames|FileLocations|StackFrames)$')
_TABLE_ROW = re.compile(r'^\d+ ')
_MODULE_NAME = re.compile(r'^HloModule [^ ,]+')


def program_text(hlo: str) -> str:
  """An optimized HLO module's text without what names source locations."""
  lines = []
  for line in hlo.splitlines():
    if not line.strip() or _TABLE_HEADER.match(line) or _TABLE_ROW.match(line):
      continue
    lines.append(_MODULE_NAME.sub('HloModule _', _METADATA.sub('', line)))
  return '\n'.join(lines)


def dumped_programs(tree: str, cell: dict, where: str) -> tuple[list[str], dict]:
  """The optimized programs of ``cell`` at ``tree``, in compile order, and the
  cell's JSON line (its loss)."""
  env = {
    **os.environ,
    'PYTHONPATH': tree,
    'XLA_FLAGS': f'--xla_dump_to={where} --xla_dump_hlo_as_text',
  }
  script = os.path.join(tree, 'benchmarks', 'meta_step.py')
  cmd = [sys.executable, script, '--single', json.dumps(cell), '--repeats', '1']
  out = harness.run_json(cmd, cell, env=env)
  files = sorted(glob.glob(os.path.join(where, '*after_optimizations.txt')))
  programs = []
  for path in files:
    with open(path) as f:
      programs.append(program_text(f.read()))
  return programs, out


def compare(trees: dict, cells) -> list[dict]:
  rows = []
  for names in cells:
    cell = harness.cpu_default_cell(*names)
    found = {}
    for name, tree in trees.items():
      with tempfile.TemporaryDirectory() as where:
        found[name] = dumped_programs(tree, cell, where)
    (before, out_a), (after, out_b) = found.values()
    rows.append(
      {
        **cell,
        'modules': [len(before), len(after)],
        'identical': bool(before) and before == after,
        'differing_modules': sum(a != b for a, b in zip(before, after))
        + abs(len(before) - len(after)),
        'losses': [out_a.get('loss'), out_b.get('loss')],
        'errors': [o['error'] for o in (out_a, out_b) if 'error' in o],
      }
    )
  return rows


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--before', required=True, help='the commit to compare against')
  p.add_argument('--after', default='HEAD', help='the commit to check')
  p.add_argument('--out', default=harness.RESULTS)
  args = p.parse_args(argv)
  stamp = harness.run_stamp(__file__)
  hardware = harness.hardware()
  revs = [
    subprocess.run(
      ['git', 'rev-parse', '--short', rev],
      cwd=cpu_redesign.ROOT,
      capture_output=True,
      text=True,
      check=True,
    ).stdout.strip()
    for rev in (args.before, args.after)
  ]
  with harness.worktrees(cpu_redesign.ROOT, revs) as paths:
    rows = compare(dict(zip(revs, paths)), cpu_redesign.CELLS)
  report = {**stamp, 'hardware': hardware, 'commits': revs, 'rows': rows}
  same = all(r['identical'] for r in rows)
  lines = [
    f'# Optimized programs at {revs[0]} and {revs[1]}',
    '',
    f'`{stamp["command"]}` on {hardware["cpu_model"]}, jax {hardware["jax"]}, '
    f'{stamp["date"]}. Every module XLA compiled for each cell, after optimization, '
    'compared with source-location names removed. '
    + (
      'Every cell compiles to the same programs at both commits.'
      if same
      else 'Some cells compile to different programs.'
    ),
    '',
    '| learner | episodes | batching | modules | identical | loss at both |',
    '|---|---|---|---|---|---|',
  ]
  for r in rows:
    losses = 'same' if r['losses'][0] == r['losses'][1] else 'differ'
    lines.append(
      f'| {r["estimator"]} | {r["config"]} | {r["batching"]} | '
      f'{r["modules"][0]} / {r["modules"][1]} | '
      f'{"yes" if r["identical"] else "no"} | {losses} |'
    )
  text = '\n'.join(lines) + '\n'
  print(text)
  harness.save_report(args.out, f'{hardware["backend"]}_same_program', report, text)
  return 0 if same else 1


if __name__ == '__main__':
  sys.exit(main())
