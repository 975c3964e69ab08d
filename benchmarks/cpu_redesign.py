"""Is the meta-learner interface (issue 17) slower than the code before it?

Times the jitted meta-update of ``meta_step.py``'s cells at the library's CPU
defaults (MAML, first-order MAML and Reptile on MAML's 5w1s and 20w1s episodes with
'map' batching, ProtoNet on its 60w5s5q episode with 'vmap' as its config trains;
patches convolutions, 1 device) with two source trees: the commit before the
redesign (``--before``) and ``--after`` (default HEAD), each checked out in a
temporary git worktree so that edits to this tree cannot leak in. Each tree runs its own ``benchmarks/meta_step.py`` with its own ``jmeta``
first on ``PYTHONPATH``, each cell in a fresh subprocess; the two trees are
interleaved round by round with their order alternating, on the same machine. Both
report the loss of the timed step, so the table also shows that they computed the
same update.

  python benchmarks/cpu_redesign.py --rounds 3 --repeats 5

Writes ``<backend>_redesign.json`` and ``.md`` to ``--out``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import harness

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BEFORE = '18f54a9'  # the last commit before the redesign (its golden short runs)
CELLS = (
  ('maml', '5w1s', 'map'),
  ('fomaml', '5w1s', 'map'),
  ('reptile', '5w1s', 'map'),
  ('maml', '20w1s', 'map'),
  ('fomaml', '20w1s', 'map'),
  ('reptile', '20w1s', 'map'),
  ('protonet', '60w5s5q', 'vmap'),
)


def run(args, trees: dict) -> list[dict]:
  def run_one(cell, setting, r):
    del r
    tree = trees[setting]
    c = harness.cpu_default_cell(*cell)
    env = {**os.environ, 'PYTHONPATH': tree}
    script = os.path.join(tree, 'benchmarks', 'meta_step.py')
    cmd = [sys.executable, script, '--single', json.dumps(c)]
    return harness.run_json(
      cmd + ['--repeats', str(args.repeats)], c, args.timeout, env
    )

  return harness.interleave(CELLS, trees, run_one, args.rounds)


def key(r):
  return (r['estimator'], r['config'], r['batching'])


def same_losses(results) -> list[str]:
  """Cells whose trees reported different losses for the timed step."""
  differ = []
  for cell in CELLS:
    losses = {r['loss'] for r in results if key(r) == cell and 'loss' in r}
    if len(losses) > 1:
      differ.append(' '.join(cell))
  return differ


def main(argv=None):
  p = harness.interleaved_parser(__doc__.splitlines()[0])
  p.add_argument('--before', default=BEFORE, help='the commit to compare against')
  p.add_argument('--after', default='HEAD', help='the commit to measure')
  args = p.parse_args(argv)
  stamp = harness.run_stamp(__file__)
  hardware = harness.hardware()
  now = subprocess.run(
    ['git', 'rev-parse', '--short', args.after],
    cwd=ROOT,
    capture_output=True,
    text=True,
    check=True,
  ).stdout.strip()
  with harness.worktrees(ROOT, (args.before, now)) as paths:
    trees = dict(zip((f'before ({args.before})', f'now ({now})'), paths))
    results = run(args, trees)
  names = list(trees)
  differ = same_losses(results)
  report = {
    **stamp,
    'hardware': hardware,
    'note': args.note,
    'trees': {name: args.before if name == names[0] else now for name in names},
    'losses_differ': differ,
    'results': results,
  }
  heading = harness.interleaved_heading(
    'Meta-update step time before and after the meta-learner interface',
    stamp,
    hardware,
    args,
  )
  text = (
    f'{heading}; Conv4 with patches convolutions, 1 device. '
    + (
      'Both trees reported the same loss for every cell.'
      if not differ
      else f'The losses differ for: {", ".join(differ)}.'
    )
    + f' {args.note}\n\n'
    + harness.median_table(
      results,
      CELLS,
      trees,
      key,
      'learner | episodes | batching',
      (names[1], names[0], 'now / before'),
    )
  )
  print(text)
  harness.save_report(args.out, f'{hardware["backend"]}_redesign', report, text)


if __name__ == '__main__':
  main()
