"""Memory of exact second-order MAML against the number of inner steps.

For inner steps 1, 5, 10 and 20 and each memory option (plain, ``remat=True``,
task chunking, both), compiles ``make_meta_trainer(maml(...), adam).step`` on MAML's
Omniglot 5-way 1-shot episode shape (Conv4, meta-batch 32) and records XLA's
compiled memory (``memory_analysis()``: temporaries, the peak working set beyond
inputs and outputs) and the median time of a few steps. Memory comes from the
compiler, so it is exact and not disturbed by other jobs; times are.

  python benchmarks/memory_inner_steps.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jmeta

OPTIONS = {
  # name: (batching, remat)
  'vmap': ('vmap', False),
  'vmap + remat': ('vmap', True),
  'chunked (8)': ('chunked', False),
  'chunked (8) + remat': ('chunked', True),
  'map': ('map', False),
  'map + remat': ('map', True),
}
STEPS = (1, 5, 10, 20)


def batch(n_way=5, k_shot=1, tasks=32, seed=0):
  rng = np.random.default_rng(seed)

  def images(n):
    return rng.uniform(size=(tasks, n, 28, 28, 1)).astype(np.float32)

  def labels(k):
    return np.tile(np.repeat(np.arange(n_way), k), (tasks, 1)).astype(np.int32)

  return jmeta.TaskBatch(
    images(n_way * k_shot), labels(k_shot), images(n_way), labels(1)
  )


def measure(steps: int, option: str, repeats: int, conv_impl: str) -> dict:
  strategy, remat = OPTIONS[option]
  model = jmeta.conv4(5, conv_impl=conv_impl)
  data = batch()
  params = model.init(jax.random.key(0), data.support_inputs[0])
  estimator = jmeta.maml(
    model,
    jmeta.losses.cross_entropy,
    inner_steps=steps,
    inner_learning_rate=2.0,
    batching=strategy,
    chunk_size=8 if strategy == 'chunked' else None,
    remat=remat,
  )
  trainer = jmeta.make_meta_trainer(estimator, optax.adam(1e-3))
  state = trainer.init(params)
  start = time.perf_counter()
  compiled = trainer.step.lower(state, data).compile()
  compile_s = time.perf_counter() - start
  memory = compiled.memory_analysis()
  times = []
  for _ in range(repeats + 1):
    start = time.perf_counter()
    state, metrics = compiled(state, data)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - start)
  return {
    'inner_steps': steps,
    'option': option,
    'temp_mib': round(memory.temp_size_in_bytes / 2**20, 1),
    'compile_s': round(compile_s, 1),
    'step_s': round(statistics.median(times[1:]), 3),
  }


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--repeats', type=int, default=2)
  p.add_argument(
    '--steps', type=lambda s: [int(x) for x in s.split(',')], default=STEPS
  )
  p.add_argument('--options', type=lambda s: s.split(';'), default=list(OPTIONS))
  p.add_argument('--conv-impl', default='auto')
  p.add_argument('--out', default='benchmarks/results')
  args = p.parse_args(argv)
  rows = []
  for steps in args.steps:
    for option in args.options:
      row = measure(steps, option, args.repeats, args.conv_impl)
      print(json.dumps(row), flush=True)
      rows.append(row)
  backend = jax.default_backend()
  device = jax.devices()[0].device_kind
  report = {
    'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
    'backend': backend,
    'device': device,
    'cpu_count': __import__('os').cpu_count(),
    'jax': jax.__version__,
    'python': platform.python_version(),
    'command': 'python ' + ' '.join(sys.argv),
    'rows': rows,
  }
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  (out / f'{backend}_memory_inner_steps.json').write_text(json.dumps(report, indent=2))
  lines = [
    f'# Second-order MAML memory against inner steps ({backend})',
    '',
    f'- Date: {report["date"]}; device: {device}, {report["cpu_count"]} CPUs as seen '
    f'by `os.cpu_count()`; jax {jax.__version__}',
    f'- Command: `{report["command"]}`',
    '- Conv4 (strided), 5-way 1-shot, meta-batch 32, inner SGD at 2.0, one Adam '
    "outer step. *temp* is XLA's compiled temporary memory (exact); *step* is the "
    'median wall time (noisy on a shared machine).',
    '',
    '| inner steps | option | temp (MiB) | compile (s) | step (s) |',
    '|---:|---|---:|---:|---:|',
  ]
  for r in rows:
    lines.append(
      f'| {r["inner_steps"]} | {r["option"]} | {r["temp_mib"]} | {r["compile_s"]} | '
      f'{r["step_s"]} |'
    )
  (out / f'{backend}_memory_inner_steps.md').write_text('\n'.join(lines) + '\n')


if __name__ == '__main__':
  jnp.zeros(())  # initialise the backend before timing anything
  main()
