"""Speed of float32 against bfloat16 compute (``jmeta.models.mixed_precision``).

Times the second-order MAML meta-update (strided Conv4, MAML's 5w1s and 20w1s
episode shapes as in ``meta_step.py``, default batching and convolutions) with
float32 and with bfloat16 compute, each in a fresh subprocess, and writes
``results/<backend>_precision.{json,md}``.

  python benchmarks/precision.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import harness

DTYPES = ('float32', 'bfloat16')


def run_one(config: str, dtype: str, repeats: int) -> dict:
  import jax
  import optax

  import jmeta

  cfg = harness.CONFIGS[config]
  model = jmeta.conv4(cfg['n_way'])
  if dtype != 'float32':
    model = jmeta.models.mixed_precision(model, dtype)
  batch = harness.random_task_batch(cfg['n_way'], cfg['k_shot'], cfg['meta_batch'])
  estimator = jmeta.maml(
    model,
    jmeta.losses.cross_entropy,
    inner_steps=cfg['inner_steps'],
    inner_learning_rate=harness.INNER_LEARNING_RATE,
  )
  trainer = jmeta.make_meta_trainer(estimator, optax.adam(1e-3))
  state = trainer.init(model.init(jax.random.key(0), batch.support_inputs[0]))
  timing, state, metrics = harness.time_step(trainer, state, batch, repeats)
  compiled = trainer.step.lower(state, batch).compile()
  memory = compiled.memory_analysis()
  return {
    'config': config,
    'compute_dtype': dtype,
    **timing,
    'temp_mib': memory.temp_size_in_bytes / 2**20 if memory else None,
    **harness.device_fields(),
  }


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--configs', default='5w1s,20w1s')
  p.add_argument('--repeats', type=int, default=5)
  p.add_argument('--note', action='append', default=[], help='a line for the report')
  p.add_argument('--out', default=harness.RESULTS)
  p.add_argument('--single', nargs=2, help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.single:
    print(json.dumps(run_one(*args.single, args.repeats)), flush=True)
    return
  rows = []
  for config in args.configs.split(','):
    for dtype in DTYPES:
      cmd = [sys.executable, os.path.abspath(__file__), '--single', config, dtype]
      cmd += ['--repeats', str(args.repeats)]
      rows.append(harness.run_json(cmd, {'config': config, 'compute_dtype': dtype}))
      print(rows[-1], flush=True)
  ok = [r for r in rows if 'error' not in r]
  backend = ok[0]['backend'] if ok else 'unknown'
  report = {
    **harness.run_stamp(__file__),
    'notes': args.note,
    'rows': rows,
  }
  harness.save_report(
    args.out, f'{backend}_precision', report, markdown(report, backend)
  )


def markdown(report: dict, backend: str) -> str:
  lines = [
    f'# float32 against bfloat16 compute ({backend})',
    '',
    f'- Date: {report["date"]}; command: `{report["command"]}`',
    '- Second-order MAML, strided Conv4, default batching and convolutions; '
    'bfloat16 = `jmeta.models.mixed_precision(conv4, jnp.bfloat16)` (float32 '
    'params, gradients, optimizer and loss; float32 accumulation).',
    *(f'- {n}' for n in report['notes']),
    '',
    '| config | compute | step (s) | compile (s) | XLA temp memory (MiB) |',
    '|---|---|---:|---:|---:|',
  ]
  for r in report['rows']:
    if 'error' in r:
      lines.append(
        f'| {r["config"]} | {r["compute_dtype"]} | failed: {r["error"]} | | |'
      )
    else:
      lines.append(
        f'| {r["config"]} | {r["compute_dtype"]} | {r["step_s"]:.3f} | '
        f'{r["compile_s"]:.1f} | {r["temp_mib"]:.1f} |'
      )
  return '\n'.join(lines) + '\n'


if __name__ == '__main__':
  main()
