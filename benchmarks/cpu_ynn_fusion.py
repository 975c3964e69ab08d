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

import json
import os
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


def run(args):
  def run_one(cell, setting, r):
    env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
    env.update(SETTINGS[setting])
    c = harness.cpu_default_cell(*cell)
    cmd = [sys.executable, META_STEP, '--single', json.dumps(c)]
    return harness.run_json(
      cmd + ['--repeats', str(args.repeats)], c, args.timeout, env
    )

  return harness.interleave(CELLS, SETTINGS, run_one, args.rounds)


def table(results) -> str:
  """One row per cell: median step time per setting (off / on), or crashed runs."""
  return harness.median_table(
    results,
    CELLS,
    SETTINGS,
    lambda r: (r['estimator'], r['config'], r['batching']),
    'learner | episodes | batching',
    ('fusions off', 'fusions on (default)', 'off / on'),
  )


def main(argv=None) -> None:
  harness.comparison_main(
    __file__,
    'Cost of turning off XLA:CPU YNNPACK fusions (jmeta.xla_workarounds)',
    '; Conv4 with patches convolutions, 1 device.',
    run,
    table,
    'ynn_fusion',
    argv,
  )


if __name__ == '__main__':
  main()
