"""What turning off XLA:CPU's YNNPACK fusions costs, per meta-step.

jaxlib 0.10.2 and 0.11.0 crash on some shapes inside YNNPACK fusions;
``jmeta.xla_workarounds.disable_ynn_fusions()`` (or
``XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=``) turns them off. This times
``meta_step.py``'s cells with the fusions on (jaxlib's default, which jmeta keeps)
and off, each cell in a fresh subprocess, the two settings interleaved round by
round with their order alternating, on the same machine.

  python benchmarks/cpu_ynn_fusion.py --rounds 3 --repeats 5

Writes ``<backend>_ynn_fusion.json`` and ``.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

import harness

META_STEP = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'meta_step.py')
# The library's CPU defaults for each learner: 'map' batching for the
# gradient-based learners; ProtoNet with 'map' too (the cell that crashes with
# the fusions on) and with 'vmap' (one episode per step, as its config trains).
CELLS = (
  ('maml', '5w1s', 'map'),
  ('fomaml', '5w1s', 'map'),
  ('maml', '20w1s', 'map'),
  ('protonet', '60w5s5q', 'vmap'),
  ('protonet', '60w5s5q', 'map'),
)
SETTINGS = {
  'fusions off': {'XLA_FLAGS': '--xla_cpu_experimental_ynn_fusion_type='},
  'fusions on (default)': {},
}


def cell_dict(estimator, config, batching):
  return {
    'estimator': estimator,
    'config': config,
    'batching': batching,
    'conv_impl': 'patches',
    'variant': 'maxpool' if estimator == 'protonet' else 'strided',
    'devices': 1,
  }


def run(args):
  results = []
  names = list(SETTINGS)
  for r in range(args.rounds):
    order = names if r % 2 == 0 else names[::-1]
    for cell in CELLS:
      for setting in order:
        env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
        env.update(SETTINGS[setting])
        c = {**cell_dict(*cell), 'setting': setting, 'round': r}
        cmd = [sys.executable, META_STEP, '--single', json.dumps(c)]
        out = harness.run_json(
          cmd + ['--repeats', str(args.repeats)], c, args.timeout, env
        )
        print(json.dumps(out), flush=True)
        results.append(out)
  return results


def table(results) -> str:
  """One row per cell: median step time per setting, or how many runs crashed."""
  names = list(SETTINGS)
  lines = [
    f'| learner | episodes | batching | {names[0]}: step s | {names[1]}: step s | off / on |',
    '|---|---|---|---|---|---|',
  ]
  for cell in CELLS:
    shown, medians = [], []
    for setting in names:
      rows = [
        r
        for r in results
        if (r['estimator'], r['config'], r['batching']) == cell
        and r['setting'] == setting
      ]
      failed = sum('error' in r for r in rows)
      if failed:
        shown.append(f'failed in {failed} of {len(rows)} runs')
        medians.append(None)
      else:
        medians.append(statistics.median(r['step_s'] for r in rows))
        shown.append(f'{medians[-1]:.3f}')
    off, on = medians
    ratio = f'{off / on:.2f}x' if off is not None and on is not None else 'n/a'
    lines.append(
      f'| {cell[0]} | {cell[1]} | {cell[2]} | {shown[0]} | {shown[1]} | {ratio} |'
    )
  return '\n'.join(lines) + '\n'


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--rounds', type=int, default=3)
  p.add_argument(
    '--repeats', type=int, default=5, help='timed calls per cell and round'
  )
  p.add_argument('--timeout', type=float, default=900)
  p.add_argument('--out', default=harness.RESULTS)
  p.add_argument('--note', default='', help='conditions to state beside the table')
  args = p.parse_args(argv)
  stamp = harness.run_stamp(__file__)
  hardware = harness.hardware()
  results = run(args)
  report = {**stamp, 'hardware': hardware, 'note': args.note, 'results': results}
  text = (
    f'# Cost of turning off XLA:CPU YNNPACK fusions (jmeta.xla_workarounds)\n\n'
    f'`{stamp["command"]}` on {hardware["cpu_model"]} ({hardware["cpu_count"]} cores), '
    f'jax {hardware["jax"]}, jaxlib {hardware["jaxlib"]}, {stamp["date"]}. '
    f'Median over {args.rounds} interleaved rounds of the per-round median of '
    f'{args.repeats} steps; Conv4 with patches convolutions, 1 device. {args.note}\n\n'
    + table(results)
  )
  print(text)
  harness.save_report(args.out, f'{hardware["backend"]}_ynn_fusion', report, text)


if __name__ == '__main__':
  main()
