"""Benchmark of the full jitted meta-update on Conv4 with MAML's Omniglot episodes.

Measures ``jmeta.make_meta_trainer(estimator, optax.adam(1e-3)).step`` on a fixed
random ``TaskBatch`` of 28x28x1 images (support N*K, query N*Q per task, Q = 1 for the gradient-based configs) for every
combination of estimator, episode config, batching strategy, convolution
implementation and Conv4 variant asked for, on each device count asked for
(``--devices``: with d > 1 the task axis is sharded over d devices with
``make_meta_trainer(..., mesh=jmeta.task_mesh(...))``; on a CPU they are host devices
made with ``jax_num_cpu_devices``, so d = the core count runs one task stream per
core). Each combination runs in a fresh subprocess, so its peak resident memory
(``ru_maxrss``) is its own.

  python benchmarks/meta_step.py                      # the full grid
  python benchmarks/meta_step.py --estimators maml --configs 5w1s --repeats 3

Writes ``<backend>_meta_step.json`` and ``<backend>_meta_step.md`` to ``--out``.
``--readme README.md`` rewrites the README's table from that report
(``tables.py``, which makes it) and runs nothing.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time

import harness
import tables

# ProtoNet has no inner loop and trains on its own episodes with its max-pool
# embedding; the gradient-based estimators run on MAML's episodes.
METRIC_ESTIMATORS = ('protonet',)
METRIC_CONFIGS = ('60w5s5q',)
BATCHING = ('vmap', 'map', 'chunked')
CONV_IMPLS = ('xla', 'patches')
VARIANTS = ('strided', 'maxpool')
# The max-pool variant is run for this (estimator, config) only, with its fastest
# strided batching/conv, to show the cost of second derivatives through max-pooling.
MAXPOOL_CELL = ('maml', '5w1s')


def _counts(text):
  try:
    counts = tuple(int(x) for x in text.split(','))
  except ValueError:
    counts = ()
  if not counts or min(counts) < 1:
    raise argparse.ArgumentTypeError(f'expected positive integers like 1,2; got {text}')
  return counts


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument(
    '--estimators',
    type=harness.choice_list(harness.ESTIMATOR_NAMES),
    default=harness.ESTIMATOR_NAMES,
  )
  p.add_argument(
    '--configs',
    type=harness.choice_list(tuple(harness.CONFIGS)),
    default=tuple(harness.CONFIGS),
  )
  p.add_argument('--batching', type=harness.choice_list(BATCHING), default=BATCHING)
  p.add_argument(
    '--conv-impl', type=harness.choice_list(CONV_IMPLS), default=CONV_IMPLS
  )
  p.add_argument(
    '--variants',
    type=harness.choice_list(VARIANTS),
    default=VARIANTS,
    help="'maxpool' runs for maml 5w1s only, with its fastest batching/conv.",
  )
  p.add_argument(
    '--devices',
    type=_counts,
    default=(1,),
    help='comma-separated device counts, e.g. 1,2; cells whose meta-batch does not '
    'split over a count are not run with it',
  )
  p.add_argument('--repeats', type=int, default=5, help='timed calls per cell')
  p.add_argument(
    '--skip',
    action='append',
    default=[],
    metavar='CONFIG:BATCHING|CONV',
    help="leave out cells, e.g. '20w1s:chunked' or '20w1s:xla' (repeatable)",
  )
  p.add_argument(
    '--append',
    action='store_true',
    help='add to (and replace matching cells of) the report already in --out',
  )
  p.add_argument('--timeout', type=float, default=900, help='seconds per cell')
  p.add_argument('--out', default=harness.RESULTS)
  p.add_argument(
    '--readme',
    metavar='PATH',
    help='regenerate the table between the markers in PATH from the report in '
    "--out, and run nothing (tables.py's meta_step section)",
  )
  p.add_argument('--single', help=argparse.SUPPRESS)
  return p.parse_args(argv)


def run_cell(cell, repeats):
  """Compiles and times one configuration in this process; returns its numbers."""
  import jax
  import optax

  import jmeta

  devices = cell.get('devices', 1)
  # Before the first JAX operation; it sets the CPU platform's device count only.
  jax.config.update('jax_num_cpu_devices', devices)
  if len(jax.devices()) < devices:
    raise SystemExit(f'{devices} devices asked for, {len(jax.devices())} present')
  mesh = jmeta.task_mesh(jax.devices()[:devices]) if devices > 1 else None
  cfg = harness.CONFIGS[cell['config']]
  batch = harness.random_task_batch(
    cfg['n_way'], cfg['k_shot'], cfg['meta_batch'], cfg.get('q_query', 1)
  )
  estimator, params = harness.make_learner(cell, cfg)
  trainer = jmeta.make_meta_trainer(estimator, optax.adam(1e-3), mesh=mesh)
  state = trainer.init(params)
  if mesh is not None:
    batch = jmeta.shard_task_batch(batch, mesh)
  jax.block_until_ready(state)

  timing, state, metrics = harness.time_step(trainer, state, batch, repeats)
  return {
    **timing,
    'tasks_per_s': cfg['meta_batch'] / timing['step_s'],
    'loss': float(metrics['loss']),
    # Compiled by jmeta.precompile, which hands the compiler's memory back first.
    'precompiled': True,
    'peak_rss_mib': harness.peak_rss_mib(),
    'backend': jax.default_backend(),
  }


def run_in_subprocess(cell, repeats, timeout):
  cmd = [sys.executable, os.path.abspath(__file__), '--single', json.dumps(cell)]
  start = time.perf_counter()
  r = harness.run_json(cmd + ['--repeats', str(repeats)], cell, timeout)
  return r if 'error' in r else {**r, 'wall_s': time.perf_counter() - start}


def grid(args):
  """The strided cells, in run order."""
  cells = []
  for config in args.configs:
    for estimator in args.estimators:
      metric = estimator in METRIC_ESTIMATORS
      if metric != (config in METRIC_CONFIGS):
        continue
      for devices in args.devices:
        if harness.CONFIGS[config]['meta_batch'] % devices:
          continue
        for batching in args.batching:
          for conv_impl in args.conv_impl:
            if {f'{config}:{batching}', f'{config}:{conv_impl}'} & set(args.skip):
              continue
            cells.append(
              {
                'estimator': estimator,
                'config': config,
                'batching': batching,
                'conv_impl': conv_impl,
                'variant': 'maxpool' if metric else 'strided',
                'devices': devices,
              }
            )
  return cells


def missing_cells(results):
  """Strided cells of the full grid of the estimators and configs in ``results``."""
  have = {tables.cell_key(r) for r in results}
  estimators = [
    e for e in harness.ESTIMATOR_NAMES if any(r['estimator'] == e for r in results)
  ]
  configs = [c for c in harness.CONFIGS if any(r['config'] == c for r in results)]

  def variant(e):
    return 'maxpool' if e in METRIC_ESTIMATORS else 'strided'

  return [
    (e, c, variant(e), b, i)
    for c in configs
    for e in estimators
    for b in BATCHING
    for i in CONV_IMPLS
    if (e in METRIC_ESTIMATORS) == (c in METRIC_CONFIGS)
    and (e, c, variant(e), b, i, 1) not in have
  ]


def markdown(report):
  hw, results = report['hardware'], report['results']
  lines = [
    f'# Meta-update benchmark ({hw["backend"]})',
    '',
    f'- Date: {report["date"]}',
    f'- Hardware: {hw["cpu_model"]}, {hw["cpu_count"]} CPUs as seen by '
    f'`os.cpu_count()`; backend `{hw["backend"]}` ({", ".join(hw["devices"])})',
    f'- Software: jax {hw["jax"]}, jaxlib {hw["jaxlib"]}, Python {hw["python"]}',
    *(f'- Command: `{c}`' for c in report['commands']),
    f'- Total runtime: {report["total_s"] / 60:.1f} min',
    '',
    'Each row is `make_meta_trainer(estimator, optax.adam(1e-3)).step` on a fixed '
    'random TaskBatch of 28x28x1 images (support N*K, query N*Q per task), Conv4 '
    f'with {{{", ".join(CONV_IMPLS)}}} convolutions, cross-entropy, inner SGD at lr '
    f'{harness.INNER_LEARNING_RATE}; chunked batching uses '
    f'chunk_size={harness.CHUNK_SIZE}. '
    '*Compile* is `jmeta.precompile` (tracing + compilation) plus the first call; '
    f'*step* is the median of {tables.repeats_text(report["results"])} timed calls '
    'after one warm-up (per cell in the JSON); *peak RSS* is `ru_maxrss` of the fresh '
    'subprocess that ran the row (includes the Python/JAX baseline; '
    f'{tables.PRE_PRECOMPILE}). *Devices*: the task axis sharded over that many '
    'devices (host devices on a CPU, one task stream each). Bold marks the fastest '
    'setup per (estimator, config).',
    '',
  ]
  if hw['backend'] == 'cpu':
    lines += [
      '> Timings are noisy: the machine was shared with other jobs while this ran, '
      'so treat differences under ~20% as ties.',
      '',
    ]
  for name, cfg in harness.CONFIGS.items():
    if any(r['config'] == name for r in results):
      lines.append(
        f'- `{name}`: {cfg["n_way"]}-way {cfg["k_shot"]}-shot, '
        f'{cfg.get("q_query", 1)} quer{"y" if cfg.get("q_query", 1) == 1 else "ies"} '
        f'per class, meta-batch {cfg["meta_batch"]}, {cfg["inner_steps"]} inner '
        'step(s)'
      )
  for note in report.get('notes', []):
    lines.append(f'- {note}')
  missing = missing_cells(results)
  if missing:
    lines.append(
      '- Not run (cut to bound the runtime on the shared machine): '
      + ', '.join(' '.join(k[:2] + k[3:]) for k in missing)
      + '.'
    )
  lines += [
    '',
    '| estimator | config | variant | batching | conv | devices | compile (s) '
    '| step (s) | tasks/s | peak RSS (MiB) |',
    '|---|---|---|---|---|---:|---:|---:|---:|---:|',
  ]
  for r in results:
    key = (r['estimator'], r['config'], r['variant'])
    group = [x for x in results if (x['estimator'], x['config'], x['variant']) == key]
    mark = '**' if len(group) > 1 and tables.fastest(results, *key) is r else ''
    head = (
      f'| {r["estimator"]} | {r["config"]} | {r["variant"]} | '
      f'{mark}{r["batching"]}{mark} | {mark}{r["conv_impl"]}{mark} | '
      f'{tables.devices_of(r)} |'
    )
    if 'error' in r:
      lines.append(f'{head} | failed: {r["error"]} | | |')
    else:
      lines.append(
        f'{head} {r["compile_s"]:.1f} | {mark}{r["step_s"]:.3f}{mark} | '
        f'{r["tasks_per_s"]:.1f} | {tables.rss_text(r)} |'
      )
  lines += ['', '## Fastest per (estimator, config)', '']
  for key in tables.groups(results):
    best = tables.fastest(results, *key)
    if best is not None:
      lines.append(
        f'- {key[0]} {key[1]} ({key[2]}): {tables.setup(best)}, '
        f'{best["step_s"]:.3f} s/step, {best["tasks_per_s"]:.1f} tasks/s'
      )
  return '\n'.join(lines) + '\n'


def _order(r):
  names = [
    harness.ESTIMATOR_NAMES,
    tuple(harness.CONFIGS),
    VARIANTS,
    BATCHING,
    CONV_IMPLS,
  ]
  return (
    names[1].index(r['config']),
    *(n.index(v) for n, v in zip(names, tables.cell_key(r))),
    tables.devices_of(r),
  )


def report_name(hw) -> str:
  return f'{hw["backend"]}_meta_step'


def load_previous(args, hw):
  """The report already in --out, for --append; None if there is none."""
  path = os.path.join(args.out, report_name(hw) + '.json')
  if not (args.append and os.path.exists(path)):
    return None
  with open(path) as f:
    return json.load(f)


def write_report(args, commands, results, total_s, hw, previous, complete=True):
  """Writes the JSON and markdown reports; returns their common path stem."""
  notes = list(previous['notes']) if previous else []
  if previous:
    new = {tables.cell_key(r) for r in results}
    old = [r for r in previous['results'] if tables.cell_key(r) not in new]
    results = sorted(old + results, key=_order)
    total_s += previous['total_s']
  # Earlier runs' cuts may be filled now; the commands list says what each ran.
  notes = [n for n in notes if not n.startswith(('Partial results', 'Cells left'))]
  if args.skip:
    notes.append(f'Cells left out to bound the runtime: {", ".join(args.skip)}.')
  if not complete:
    notes.append('Partial results: the run is still going or was interrupted.')
  report = {
    'date': datetime.datetime.now().astimezone().isoformat(timespec='seconds'),
    'commands': commands,
    'repeats': args.repeats,
    'chunk_size': harness.CHUNK_SIZE,
    'inner_learning_rate': harness.INNER_LEARNING_RATE,
    'outer_optimizer': 'adam(1e-3)',
    'configs': harness.CONFIGS,
    'hardware': hw,
    'notes': notes,
    'results': results,
    'total_s': total_s,
  }
  return harness.save_report(args.out, report_name(hw), report, markdown(report))


def main(argv=None):
  args = parse_args(argv)
  if args.single:
    print(json.dumps(run_cell(json.loads(args.single), args.repeats)), flush=True)
    return

  if args.readme:
    tables.write_readme(args.readme, args.out, ['meta_step'])
    return

  command = harness.run_stamp(__file__)['command']
  start = time.perf_counter()
  hw = harness.hardware()
  previous = load_previous(args, hw)
  commands = (previous['commands'] if previous else []) + [command]
  results = []
  cells = grid(args) if 'strided' in args.variants else []
  if 'maxpool' in args.variants and MAXPOOL_CELL[0] in args.estimators:
    if MAXPOOL_CELL[1] in args.configs:
      # Run right after the strided cells it depends on; None is filled in then.
      at = [
        i for i, c in enumerate(cells) if (c['estimator'], c['config']) == MAXPOOL_CELL
      ]
      cells.insert(at[-1] + 1 if at else len(cells), None)
  for i, cell in enumerate(cells):
    if cell is None:
      best = tables.fastest(results, *MAXPOOL_CELL)
      cell = {
        'estimator': MAXPOOL_CELL[0],
        'config': MAXPOOL_CELL[1],
        'batching': best['batching'] if best else 'map',
        'conv_impl': best['conv_impl'] if best else 'patches',
        'variant': 'maxpool',
        'devices': tables.devices_of(best) if best else 1,
      }
    r = run_in_subprocess(cell, args.repeats, args.timeout)
    results.append(r)
    desc = ' '.join(str(cell[k]) for k in ('estimator', 'config', 'variant'))
    desc += f' {cell["batching"]}/{cell["conv_impl"]} x{cell.get("devices", 1)}'
    if 'error' in r:
      print(f'[{i + 1}/{len(cells)}] {desc}: FAILED {r["error"]}', flush=True)
    else:
      print(
        f'[{i + 1}/{len(cells)}] {desc}: compile {r["compile_s"]:.1f}s, '
        f'step {r["step_s"]:.3f}s, {r["tasks_per_s"]:.1f} tasks/s, '
        f'{r["peak_rss_mib"]:.0f} MiB',
        flush=True,
      )
    elapsed = time.perf_counter() - start
    write_report(args, commands, results, elapsed, hw, previous, complete=False)

  elapsed = time.perf_counter() - start
  write_report(args, commands, results, elapsed, hw, previous)


if __name__ == '__main__':
  main()
