"""Matmul FLOPs per meta-update, the achieved FLOP/s, and its fraction of peak.

XLA's ``compiled.cost_analysis()['flops']`` counts a ``while`` body once, whatever
its trip count, so it undercounts every ``lax.scan`` (the inner steps; the tasks
under ``batching='map'``) by the loop's length. This script counts on the jaxpr
instead: ``dot_general`` is 2 * |out| * (contracted size), ``conv_general_dilated``
is 2 * |out| * (kernel size per output feature, padding taps included, as the
patches matmul computes them), a ``scan`` body counts ``length`` times, a ``cond``
its costliest branch, after dead-code elimination. Elementwise work is left out, as
model-FLOP utilisation counts it.

The peak is measured, not looked up: the best of square ``jnp.dot`` calls in
``--peak-dtype``. ``--nominal-peak-tflops`` adds a column against a datasheet figure.

  python benchmarks/flops.py --repeats 5
  python benchmarks/flops.py --cells maml:5w1s:map:patches --repeats 3
  python benchmarks/flops.py --readme README.md   # the README's table (tables.py)

Writes ``<backend>_flops.{json,md}`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import harness
import tables

# (estimator, config, batching, conv_impl) of the main rows of meta_step.py, with
# the backend's defaults ('auto' is resolved in the report); FLOPs do not depend
# on batching or conv_impl.
DEFAULT_CELLS = (
  'maml:5w1s:auto:auto',
  'maml:20w1s:auto:auto',
  'fomaml:5w1s:auto:auto',
  'fomaml:20w1s:auto:auto',
  'reptile:5w1s:auto:auto',
  'reptile:20w1s:auto:auto',
  'maml_plus_plus:5w1s:auto:auto',
  'protonet:60w5s5q:vmap:auto',
)


def _subjaxprs(value):
  """The jaxprs held by one equation parameter (a jaxpr, a closed one, or a tuple)."""
  if hasattr(value, 'eqns'):
    yield value
  elif hasattr(value, 'jaxpr') and hasattr(value, 'consts'):
    yield value.jaxpr
  elif isinstance(value, (tuple, list)):
    for v in value:
      yield from _subjaxprs(v)


def _dot_flops(eqn) -> int:
  (contract, _), _ = eqn.params['dimension_numbers']
  lhs = eqn.invars[0].aval.shape
  out = eqn.outvars[0].aval.shape
  return 2 * math.prod(out) * math.prod(lhs[i] for i in contract)


def _conv_flops(eqn) -> int:
  rhs = eqn.invars[1].aval.shape
  out_feature = eqn.params['dimension_numbers'].rhs_spec[0]
  out = eqn.outvars[0].aval.shape
  return 2 * math.prod(out) * (math.prod(rhs) // rhs[out_feature])


def jaxpr_matmul_flops(jaxpr) -> int:
  """Matmul and convolution FLOPs of one evaluation of ``jaxpr``, loops included."""
  total = 0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == 'dot_general':
      total += _dot_flops(eqn)
    elif name == 'conv_general_dilated':
      total += _conv_flops(eqn)
    elif name == 'scan':
      total += eqn.params['length'] * jaxpr_matmul_flops(eqn.params['jaxpr'].jaxpr)
    elif name == 'cond':
      total += max(jaxpr_matmul_flops(b.jaxpr) for b in eqn.params['branches'])
    elif name == 'while':
      body = jaxpr_matmul_flops(eqn.params['body_jaxpr'].jaxpr)
      if body:
        raise ValueError(
          'a while loop with matmuls has no static trip count to count its FLOPs '
          'by; write it as lax.scan (or lax.fori_loop with static bounds).'
        )
    else:
      for value in eqn.params.values():
        for sub in _subjaxprs(value):
          total += jaxpr_matmul_flops(sub)
  return total


def matmul_flops(fn, *args) -> int:
  """Matmul FLOPs of ``fn(*args)``: traced, dead code removed (as XLA does), counted."""
  import jax
  from jax.interpreters import partial_eval as pe

  jaxpr = jax.make_jaxpr(fn)(*args).jaxpr
  jaxpr, _ = pe.dce_jaxpr(jaxpr, [True] * len(jaxpr.outvars))
  return jaxpr_matmul_flops(jaxpr)


def xla_flops(fn, *args) -> float:
  """XLA's own count (``cost_analysis``) of the compiled ``jax.jit(fn)``."""
  import jax

  analysis = jax.jit(fn).lower(*args).compile().cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0]
  return float(analysis['flops'])


def measured_peak(dtype: str, size: int, repeats: int) -> dict:
  """Best FLOP/s of a square ``size`` x ``size`` ``jnp.dot`` in ``dtype``."""
  import jax
  import jax.numpy as jnp

  a = jax.random.normal(jax.random.key(0), (size, size), dtype)
  b = jax.random.normal(jax.random.key(1), (size, size), dtype)
  dot = jax.jit(jnp.dot)
  jax.block_until_ready(dot(a, b))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(dot(a, b))
    times.append(time.perf_counter() - start)
  return {'dtype': dtype, 'size': size, 'flop_per_s': 2 * size**3 / min(times)}


def run_cell(spec: str, repeats: int) -> dict:
  """FLOPs (ours and XLA's), step time and achieved FLOP/s of one cell."""
  import optax

  import jmeta

  estimator_name, config, batching, conv_impl = spec.split(':')
  if batching == 'auto':
    batching = jmeta.default_batching()
  if conv_impl == 'auto':
    conv_impl = jmeta.models.default_conv_impl()
  cfg = harness.CONFIGS[config]
  cell = {
    'estimator': estimator_name,
    'config': config,
    'batching': batching,
    'conv_impl': conv_impl,
    'variant': 'maxpool' if estimator_name == 'protonet' else 'strided',
  }
  batch = harness.random_task_batch(
    cfg['n_way'], cfg['k_shot'], cfg['meta_batch'], cfg.get('q_query', 1)
  )
  estimator, params = harness.make_learner(cell, cfg)
  trainer = jmeta.make_meta_trainer(estimator, optax.adam(1e-3))
  state = trainer.init(params)
  flops = matmul_flops(trainer.step, state, batch)
  xla = xla_flops(trainer.step, state, batch)
  timing, _, _ = harness.time_step(trainer, state, batch, repeats)
  return {
    **cell,
    'matmul_flops': flops,
    'xla_cost_analysis_flops': xla,
    **timing,
    'achieved_flop_per_s': flops / timing['step_s'],
  }


def markdown(report) -> str:
  hw, peak = report['hardware'], report['peak']
  lines = [
    f'# Matmul FLOPs and fraction of peak ({hw["backend"]})',
    '',
    f'- Date: {report["date"]}',
    f'- Hardware: {hw["cpu_model"]}, {hw["cpu_count"]} CPUs; devices '
    f'{", ".join(hw["devices"])}; jax {hw["jax"]}',
    f'- Command: `{report["command"]}`',
    f'- Measured peak: {peak["flop_per_s"] / 1e9:.1f} GFLOP/s, the best of '
    f'{report["peak_repeats"]} {peak["size"]}x{peak["size"]} {peak["dtype"]} '
    '`jnp.dot` calls.',
    '- GFLOP: matmul and convolution FLOPs of one meta-update, counted on the '
    "jaxpr with loops multiplied out; XLA's `cost_analysis` counts each loop body "
    'once (and adds elementwise work), so its figure is shown beside it.',
    f'- Step: median of {report["repeats"]} timed calls after one warm-up, as in '
    '`meta_step.py`.',
    *(f'- {n}' for n in report.get('notes', [])),
    '',
    *tables.flops_rows(report),
  ]
  return '\n'.join(lines) + '\n'


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument(
    '--cells',
    default=','.join(DEFAULT_CELLS),
    help='comma-separated ESTIMATOR:CONFIG:BATCHING:CONV cells (meta_step.py names)',
  )
  p.add_argument('--repeats', type=int, default=5, help='timed calls per cell')
  p.add_argument('--peak-size', type=int, default=None, help='side of the peak matmul')
  p.add_argument('--peak-dtype', default='float32')
  p.add_argument('--nominal-peak-tflops', type=float, default=None)
  p.add_argument('--note', action='append', default=[])
  p.add_argument('--out', default=harness.RESULTS)
  p.add_argument(
    '--readme',
    metavar='PATH',
    help="write the table of --out's report into PATH between its markers, and run "
    "nothing (tables.py's flops section)",
  )
  p.add_argument('--single', help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  args.cells = [s.strip() for s in args.cells.split(',') if s.strip()]
  _check_cells(args.cells)
  return args


def _check_cells(specs) -> None:
  for spec in specs:
    parts = spec.split(':')
    if (
      len(parts) != 4
      or parts[0] not in harness.ESTIMATOR_NAMES
      or parts[1] not in harness.CONFIGS
      or parts[2] not in ('auto', 'vmap', 'map', 'chunked')
      or parts[3] not in ('auto', 'xla', 'patches')
    ):
      raise SystemExit(
        f'bad cell {spec!r}: expected ESTIMATOR:CONFIG:BATCHING:CONV with '
        f'ESTIMATOR in {harness.ESTIMATOR_NAMES}, CONFIG in '
        f"{tuple(harness.CONFIGS)}, BATCHING in ('auto', 'vmap', 'map', 'chunked') "
        "and CONV in ('auto', 'xla', 'patches')."
      )


def main(argv=None):
  args = parse_args(argv)
  if args.single:
    print(json.dumps(run_cell(args.single, args.repeats)), flush=True)
    return
  if args.readme:
    tables.write_readme(args.readme, args.out, ['flops'])
    return
  specs = args.cells
  # This process holds the device while each cell runs in a child of its own. JAX
  # would preallocate 75% of a GPU's memory here, and on an 80 GB H100 every child
  # then failed to load its kernels (out of memory, 2026-12-05); allocating on
  # demand leaves the children the device; they inherit the setting.
  os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')
  import jax

  hw = harness.hardware()
  size = args.peak_size or (8192 if hw['backend'] == 'gpu' else 2048)
  peak_repeats = 10
  peak = measured_peak(args.peak_dtype, size, peak_repeats)
  print(f'peak: {peak["flop_per_s"] / 1e9:.1f} GFLOP/s', flush=True)
  results = []
  for spec in specs:
    # A fresh process per cell, as meta_step.py, so cells do not share caches.
    r = harness.run_json(
      [sys.executable, __file__, '--single', spec, '--repeats', str(args.repeats)], {}
    )
    if 'error' in r:
      results.append({'spec': spec, **r})
      print(f'{spec}: FAILED {r["error"]}', flush=True)
      continue
    results.append(r)
    print(
      f'{spec}: {r["matmul_flops"] / 1e9:.2f} GFLOP '
      f'(XLA {r["xla_cost_analysis_flops"] / 1e9:.2f}), step {r["step_s"]:.3f} s, '
      f'{r["achieved_flop_per_s"] / 1e9:.1f} GFLOP/s',
      flush=True,
    )
  report = {
    **harness.run_stamp(__file__),
    'hardware': hw,
    'peak': peak,
    'peak_repeats': peak_repeats,
    'nominal_peak_tflops': args.nominal_peak_tflops,
    'repeats': args.repeats,
    'notes': args.note,
    'results': results,
  }
  harness.save_report(
    args.out, f'{jax.default_backend()}_flops', report, markdown(report)
  )


if __name__ == '__main__':
  main()
