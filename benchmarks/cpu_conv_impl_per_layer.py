"""Conv4's convolutions chosen per block: XLA's for the first block, patches after.

On XLA:CPU, patches + matmul (``jmeta.models.layers.conv2d``) beat XLA's own
convolution on 64-channel blocks, but the first block has one input channel: its
patches are 9 features wide, and the batch norm, ReLU and pooling after it work on the
largest activations of the network. This times ``meta_step.py``'s cells with patches
in every block (the CPU default) and with XLA's convolution in the first block only
(``conv_impl='xla,patches,patches,patches'``), each cell in a fresh subprocess, the
two settings interleaved round by round with their order alternating:

  python benchmarks/cpu_conv_impl_per_layer.py --rounds 3 --repeats 5

Writes ``<backend>_conv_impl_per_layer.json`` and ``.md`` to ``--out``.
"""

from __future__ import annotations

import json
import os
import sys

import harness

META_STEP = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'meta_step.py')
# (estimator, episodes, Conv4 variant, batching): ProtoNet's training episode on
# both networks as its configs batch it, and the gradient-based learners' CPU
# defaults, second order included.
CELLS = (
  ('protonet', '60w5s5q', 'maxpool', 'vmap'),
  ('protonet', '60w5s5q', 'strided', 'vmap'),
  ('maml', '5w1s', 'strided', 'map'),
  ('fomaml', '5w1s', 'strided', 'map'),
  ('reptile', '5w1s', 'strided', 'map'),
  ('maml', '20w1s', 'strided', 'map'),
  ('maml', '5w1s', 'maxpool', 'map'),
)
SETTINGS = {
  'patches': 'patches',
  'xla first block': 'xla,patches,patches,patches',
}


def cell_dict(cell, conv_impl: str) -> dict:
  estimator, config, variant, batching = cell
  return {
    'estimator': estimator,
    'config': config,
    'variant': variant,
    'batching': batching,
    'conv_impl': conv_impl,
    'devices': 1,
  }


def run(args) -> list[dict]:
  def run_one(cell, setting, r):
    c = cell_dict(cell, SETTINGS[setting])
    cmd = [sys.executable, META_STEP, '--single', json.dumps(c)]
    return harness.run_json(cmd + ['--repeats', str(args.repeats)], c, args.timeout)

  return harness.interleave(CELLS, SETTINGS, run_one, args.rounds)


def table(results) -> str:
  """One row per cell: median step time per setting, and first-block-XLA / patches."""
  return harness.median_table(
    results,
    CELLS,
    SETTINGS,
    lambda r: (r['estimator'], r['config'], r['variant'], r['batching']),
    'learner | episodes | Conv4 | batching',
    ('xla first block', 'patches', 'xla first / patches'),
  )


def main(argv=None) -> None:
  harness.comparison_main(
    __file__,
    "Conv4's first block with XLA's convolution, the others with patches",
    ' (a full meta-update with Adam), 1 device.',
    run,
    table,
    'conv_impl_per_layer',
    argv,
  )


if __name__ == '__main__':
  main()
