"""Where a meta-update's peak resident memory goes: baseline, compiling, running.

``meta_step.py`` reports one peak RSS per cell (``ru_maxrss``), which mixes the
Python/JAX baseline, what XLA takes while compiling the step and what the step takes
while it runs. This script compiles the step ahead of time and reads the peak after
each phase, in a fresh subprocess per cell:

* **import**: after importing jax and jmeta and running one JAX operation;
* **lowered**: after tracing and lowering the step to StableHLO;
* **compiled**: after XLA compiled it;
* **released**: the resident (not peak) memory once ``jmeta.release_host_memory()``
  handed the compiler's freed heap back, as ``jmeta.precompile`` does;
* **ran**: after one warm-up and ``--repeats`` calls of the compiled step;

and XLA's own count of the compiled step's temporary buffers
(``memory_analysis().temp_size_in_bytes``). The cells are ``meta_step.py``'s
(map + patches on CPU) on 1 and 2 devices, each also under every ``--xla-flags``
value given (set as ``XLA_FLAGS`` for that cell's subprocess).

  python benchmarks/memory_breakdown.py   # writes results/<backend>_memory_breakdown.*
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import harness

CELLS = (('maml', '5w1s'), ('maml', '20w1s'), ('fomaml', '5w1s'), ('fomaml', '20w1s'))
DEVICES = (1, 2)
PHASES = ('import', 'lowered', 'compiled', 'released', 'ran')


def resident_mib() -> float:
  with open('/proc/self/status') as f:
    return int(next(x for x in f if x.startswith('VmRSS:')).split()[1]) / 1024


def run_one(estimator: str, config: str, devices: int, repeats: int) -> dict:
  import jax

  jax.config.update('jax_num_cpu_devices', devices)
  import jax.numpy as jnp
  import optax

  import jmeta

  jnp.zeros(()).block_until_ready()
  peaks = {'import': harness.peak_rss_mib()}
  cell = {
    'estimator': estimator,
    'config': config,
    'variant': 'strided',
    'batching': 'map',
    'conv_impl': 'patches',
  }
  cfg = harness.CONFIGS[config]
  batch = harness.random_task_batch(cfg['n_way'], cfg['k_shot'], cfg['meta_batch'])
  est, params = harness.make_learner(cell, cfg)
  mesh = jmeta.task_mesh(jax.devices()[:devices]) if devices > 1 else None
  trainer = jmeta.make_meta_trainer(est, optax.adam(1e-3), mesh=mesh)
  state = trainer.init(params)
  if mesh is not None:
    batch = jmeta.shard_task_batch(batch, mesh)
  lowered = trainer.step.lower(state, batch)
  peaks['lowered'] = harness.peak_rss_mib()
  compiled = lowered.compile()
  peaks['compiled'] = harness.peak_rss_mib()
  jmeta.release_host_memory()
  peaks['released'] = resident_mib()
  state, _ = jax.block_until_ready(compiled(state, batch))  # warm-up
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    state, _ = jax.block_until_ready(compiled(state, batch))
    times.append(time.perf_counter() - start)
  peaks['ran'] = harness.peak_rss_mib()
  analysis = compiled.memory_analysis()
  return {
    'estimator': estimator,
    'config': config,
    'devices': devices,
    'peak_mib': peaks,
    'step_s': statistics.median(times),
    'temp_mib': analysis.temp_size_in_bytes / 2**20 if analysis else None,
    'backend': jax.default_backend(),
  }


def markdown(report: dict) -> str:
  hw = report['hardware']
  lines = [
    f'# Peak memory of a meta-update, by phase ({hw["backend"]})',
    '',
    f'- Date: {report["date"]}; command: `{report["command"]}`',
    f'- Hardware: {hw["cpu_model"]}, {hw["cpu_count"]} CPUs; jax {hw["jax"]}',
    "- `meta_step.py`'s episodes and model, map + patches; each row a fresh "
    'subprocess. Each phase column is the process peak RSS (`ru_maxrss`, MiB) once '
    'that phase has run, so the differences are what the phase added: *lowered* '
    'traces and lowers the step, *compiled* is XLA compiling it, *ran* is a warm-up '
    f'and {report["repeats"]} calls of the compiled step. *released* is not a peak '
    'but the resident memory right after `jmeta.release_host_memory()` returned '
    "the compiler's freed heap to the OS (what `jmeta.precompile` does). *XLA "
    "temp* is the compiled step's temporary buffers as XLA counts them (per "
    'device). *XLA flags* is the `XLA_FLAGS` the cell ran with; a cell runs under '
    'each value right after the other, and *step* is the median of its timed calls '
    '(seconds; this machine drifts, so only compare cells that ran together).',
    *(f'- {n}' for n in report['notes']),
    '',
    '| estimator | config | devices | XLA flags | import | lowered | compiled '
    '| released | ran | XLA temp | step (s) |',
    '|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|',
  ]
  for r in report['results']:
    flags = f'`{r["xla_flags"]}`' if r.get('xla_flags') else 'default'
    head = f'| {r["estimator"]} | {r["config"]} | {r["devices"]} | {flags} |'
    if 'error' in r:
      lines.append(f'{head} failed: {r["error"]} | | | | | | |')
      continue
    p = r['peak_mib']
    temp = f'{r["temp_mib"]:.0f}' if r['temp_mib'] is not None else '–'
    step = f'{r["step_s"]:.3f}' if 'step_s' in r else '–'
    lines.append(
      f'{head} ' + ' | '.join(f'{p[k]:.0f}' for k in PHASES) + f' | {temp} | {step} |'
    )
  return '\n'.join(lines) + '\n'


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--repeats', type=int, default=3)
  p.add_argument('--out', default=harness.RESULTS)
  p.add_argument('--note', action='append', default=[], help='a line for the report')
  p.add_argument(
    '--xla-flags',
    action='append',
    default=[],
    help='also run every cell with this XLA_FLAGS value, e.g. '
    "'--xla_cpu_use_fusion_emitters=false' (repeatable)",
  )
  p.add_argument('--single', help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.single:
    print(json.dumps(run_one(*json.loads(args.single), args.repeats)), flush=True)
    return

  results = []
  for estimator, config in CELLS:
    for devices in DEVICES:
      for flags in ('', *args.xla_flags):
        cmd = [sys.executable, os.path.abspath(__file__)]
        cmd += ['--repeats', str(args.repeats)]
        cmd += ['--single', json.dumps([estimator, config, devices])]
        cell = {'estimator': estimator, 'config': config, 'devices': devices}
        cell['xla_flags'] = flags
        results.append(
          harness.run_json(cmd, cell, env={**os.environ, 'XLA_FLAGS': flags})
        )
        print(json.dumps(results[-1]), flush=True)
  report = {
    **harness.run_stamp(__file__),
    'repeats': args.repeats,
    'hardware': harness.hardware(),
    'notes': args.note,
    'results': results,
  }
  name = f'{report["hardware"]["backend"]}_memory_breakdown'
  harness.save_report(args.out, name, report, markdown(report))


if __name__ == '__main__':
  main()
