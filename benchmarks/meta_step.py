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
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time

CONFIGS = {
  '5w1s': {'n_way': 5, 'k_shot': 1, 'meta_batch': 32, 'inner_steps': 1},
  '20w1s': {'n_way': 20, 'k_shot': 1, 'meta_batch': 16, 'inner_steps': 5},
  # ProtoNet's Omniglot training episode: 60-way 5-shot, 5 queries per class.
  '60w5s5q': {
    'n_way': 60,
    'k_shot': 5,
    'q_query': 5,
    'meta_batch': 1,
    'inner_steps': 0,
  },
}
INNER_LEARNING_RATE = 2.0
CHUNK_SIZE = 8
ESTIMATOR_NAMES = ('maml', 'fomaml', 'reptile', 'maml++', 'protonet')
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


def _csv(choices):
  def parse(text):
    items = [s.strip() for s in text.split(',') if s.strip()]
    bad = [s for s in items if s not in choices]
    if bad:
      raise argparse.ArgumentTypeError(f'unknown {bad}; expected some of {choices}')
    return items

  return parse


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
  p.add_argument('--estimators', type=_csv(ESTIMATOR_NAMES), default=ESTIMATOR_NAMES)
  p.add_argument('--configs', type=_csv(tuple(CONFIGS)), default=tuple(CONFIGS))
  p.add_argument('--batching', type=_csv(BATCHING), default=BATCHING)
  p.add_argument('--conv-impl', type=_csv(CONV_IMPLS), default=CONV_IMPLS)
  p.add_argument(
    '--variants',
    type=_csv(VARIANTS),
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
  p.add_argument(
    '--out', default=os.path.join(os.path.dirname(__file__) or '.', 'results')
  )
  p.add_argument(
    '--readme',
    metavar='PATH',
    help='regenerate the table between the markers in PATH from the report in '
    '--out, and run nothing',
  )
  p.add_argument('--single', help=argparse.SUPPRESS)
  return p.parse_args(argv)


def random_task_batch(n_way, k_shot, meta_batch, q_query=1, seed=0):
  """A fixed random TaskBatch shaped like MAML's Omniglot episodes."""
  import jax.numpy as jnp
  import numpy as np

  import jmeta

  rng = np.random.default_rng(seed)
  n_support, n_query = n_way * k_shot, n_way * q_query

  def images(n):
    return rng.standard_normal((meta_batch, n, 28, 28, 1), np.float32)

  def labels(k):
    return np.tile(np.tile(np.arange(n_way, dtype=np.int32), k), (meta_batch, 1))

  return jmeta.TaskBatch(
    jnp.asarray(images(n_support)),
    jnp.asarray(labels(k_shot)),
    jnp.asarray(images(n_query)),
    jnp.asarray(labels(q_query)),
  )


def make_estimator(cell, cfg):
  """(estimator, initial params) for a cell."""
  import jax

  import jmeta
  from jmeta import metric

  batching = cell['batching']
  chunk = CHUNK_SIZE if batching == 'chunked' else None
  n_way = cfg['n_way']
  example = jax.numpy.zeros((1, 28, 28, 1))
  if cell['estimator'] == 'protonet':
    embedding = jmeta.conv4(0, variant=cell['variant'], conv_impl=cell['conv_impl'])
    learner = metric.prototypical(embedding)
    estimator = metric.metric_estimator(
      learner, n_way=n_way, batching=batching, chunk_size=chunk
    )
    return estimator, learner.init(jax.random.key(0), example)
  model = jmeta.conv4(n_way, variant=cell['variant'], conv_impl=cell['conv_impl'])
  params = model.init(jax.random.key(0), example)
  options = dict(
    inner_steps=cfg['inner_steps'],
    inner_learning_rate=INNER_LEARNING_RATE,
    batching=batching,
    chunk_size=chunk,
  )
  if cell['estimator'] == 'maml++':
    # Every MAML++ option on: multi-step loss (annealing), learned per-layer,
    # per-step rates, per-step batch-norm weights; second order.
    def bn(path):
      return path[-1].key in ('scale', 'bias')

    options.update(
      multi_step_loss=True,
      msl_anneal_iterations=1_000_000,
      learn_inner_rates=True,
      per_step_bn_weights=bn,
    )
    params = jmeta.maml_plus_plus_params(
      params,
      inner_steps=cfg['inner_steps'],
      inner_learning_rate=INNER_LEARNING_RATE,
      learn_inner_rates=True,
      per_step_bn_weights=bn,
    )
  estimator = jmeta.make_estimator(
    cell['estimator'], model, jmeta.losses.cross_entropy, **options
  )
  return estimator, params


def time_step(trainer, state, batch, repeats: int):
  """({'compile_s', 'step_s', 'step_times_s'}, state, metrics) of ``trainer.step``.

  ``compile_s`` is ``jmeta.precompile`` (which also hands the compiler's freed memory
  back, as the Omniglot experiments do) plus the first call; one warm-up call
  follows; ``step_s`` is the median of ``repeats`` timed calls, each ending in
  ``block_until_ready``.
  """
  import jax

  import jmeta

  start = time.perf_counter()
  jmeta.precompile(trainer.step, state, batch)
  state, metrics = jax.block_until_ready(trainer.step(state, batch))
  compile_s = time.perf_counter() - start
  state, metrics = jax.block_until_ready(trainer.step(state, batch))  # warm-up
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    state, metrics = jax.block_until_ready(trainer.step(state, batch))
    times.append(time.perf_counter() - start)
  timing = {
    'compile_s': compile_s,
    'step_s': statistics.median(times),
    'step_times_s': times,
  }
  return timing, state, metrics


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
  cfg = CONFIGS[cell['config']]
  batch = random_task_batch(
    cfg['n_way'], cfg['k_shot'], cfg['meta_batch'], cfg.get('q_query', 1)
  )
  estimator, params = make_estimator(cell, cfg)
  trainer = jmeta.make_meta_trainer(estimator, optax.adam(1e-3), mesh=mesh)
  state = trainer.init(params)
  if mesh is not None:
    batch = jmeta.shard_task_batch(batch, mesh)
  jax.block_until_ready(state)

  timing, state, metrics = time_step(trainer, state, batch, repeats)
  return {
    **timing,
    'tasks_per_s': cfg['meta_batch'] / timing['step_s'],
    'loss': float(metrics['loss']),
    # Compiled by jmeta.precompile, which hands the compiler's memory back first.
    'precompiled': True,
    # ru_maxrss is in KiB on Linux.
    'peak_rss_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    'backend': jax.default_backend(),
  }


def run_json(cmd, cell: dict, timeout: float | None = None, env=None) -> dict:
  """``cell`` updated with the JSON line ``cmd`` prints last, or with its error.

  A benchmark's cells each run in a fresh subprocess (with ``env``, default this
  process's), so peak memory and caches are their own; a failed or timed-out cell
  becomes ``{**cell, 'error': ...}``.
  """
  try:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
  except subprocess.TimeoutExpired:
    return {**cell, 'error': f'timed out after {timeout:.0f}s'}
  lines = proc.stdout.strip().splitlines()
  if proc.returncode or not lines:
    return {**cell, 'error': (proc.stderr.strip().splitlines() or ['?'])[-1]}
  return {**cell, **json.loads(lines[-1])}


def run_in_subprocess(cell, repeats, timeout):
  cmd = [sys.executable, os.path.abspath(__file__), '--single', json.dumps(cell)]
  start = time.perf_counter()
  r = run_json(cmd + ['--repeats', str(repeats)], cell, timeout)
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
        if CONFIGS[config]['meta_batch'] % devices:
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


def _groups(results) -> list[tuple[str, str, str]]:
  """The distinct (estimator, config, variant) of ``results``, in their order."""
  return list(
    dict.fromkeys((r['estimator'], r['config'], r['variant']) for r in results)
  )


def device_fields() -> dict:
  """Backend, device kind, CPU count and jax version, for a benchmark row."""
  import jax

  return {
    'backend': jax.default_backend(),
    'device_kind': jax.devices()[0].device_kind,
    'cpu_count': os.cpu_count(),
    'jax': jax.__version__,
  }


def fastest(results, estimator, config, variant='strided'):
  ok = [
    r
    for r in results
    if 'error' not in r
    and (r['estimator'], r['config'], r['variant']) == (estimator, config, variant)
  ]
  return min(ok, key=lambda r: r['step_s']) if ok else None


def missing_cells(results):
  """Strided cells of the full grid of the estimators and configs in ``results``."""
  have = {_key(r) for r in results}
  estimators = [e for e in ESTIMATOR_NAMES if any(r['estimator'] == e for r in results)]
  configs = [c for c in CONFIGS if any(r['config'] == c for r in results)]

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


def devices_of(r) -> int:
  """The device count of a row (rows from before ``--devices`` ran on one)."""
  return r.get('devices', 1)


def setup(r) -> str:
  """'map + patches', or 'map + patches on 2 devices'."""
  d = devices_of(r)
  return f'{r["batching"]} + {r["conv_impl"]}' + (f' on {d} devices' if d > 1 else '')


def cpu_model():
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def hardware():
  import jax
  import jaxlib

  return {
    'cpu_model': cpu_model(),
    'cpu_count': os.cpu_count(),
    'backend': jax.default_backend(),
    'devices': [str(d) for d in jax.devices()],
    'jax': jax.__version__,
    'jaxlib': jaxlib.__version__,
    'python': platform.python_version(),
    'platform': platform.platform(),
  }


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
    f'{INNER_LEARNING_RATE}; chunked batching uses chunk_size={CHUNK_SIZE}. '
    '*Compile* is `jmeta.precompile` (tracing + compilation) plus the first call; '
    f'*step* is the median of {repeats_text(report["results"])} timed calls after '
    'one warm-up (per cell in the JSON); *peak RSS* is `ru_maxrss` of the fresh '
    'subprocess that ran the row (includes the Python/JAX baseline; '
    f'{PRE_PRECOMPILE}). *Devices*: the task axis sharded over that many devices '
    '(host devices on a CPU, one task stream each). Bold marks the fastest setup '
    'per (estimator, config).',
    '',
  ]
  if hw['backend'] == 'cpu':
    lines += [
      '> Timings are noisy: the machine was shared with other jobs while this ran, '
      'so treat differences under ~20% as ties.',
      '',
    ]
  for name, cfg in CONFIGS.items():
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
    mark = '**' if len(group) > 1 and fastest(results, *key) is r else ''
    head = (
      f'| {r["estimator"]} | {r["config"]} | {r["variant"]} | '
      f'{mark}{r["batching"]}{mark} | {mark}{r["conv_impl"]}{mark} | '
      f'{devices_of(r)} |'
    )
    if 'error' in r:
      lines.append(f'{head} | failed: {r["error"]} | | |')
    else:
      lines.append(
        f'{head} {r["compile_s"]:.1f} | {mark}{r["step_s"]:.3f}{mark} | '
        f'{r["tasks_per_s"]:.1f} | {rss_text(r)} |'
      )
  lines += ['', '## Fastest per (estimator, config)', '']
  for key in _groups(results):
    best = fastest(results, *key)
    if best is not None:
      lines.append(
        f'- {key[0]} {key[1]} ({key[2]}): {setup(best)}, '
        f'{best["step_s"]:.3f} s/step, {best["tasks_per_s"]:.1f} tasks/s'
      )
  return '\n'.join(lines) + '\n'


README_BEGIN = '<!-- generated by `python benchmarks/meta_step.py --readme README.md`; do not edit by hand -->'
README_END = '<!-- end generated meta_step -->'
# (batching, conv, devices) columns of the README table.
README_CELLS = (
  ('map', 'patches', 2),
  ('map', 'patches', 1),
  ('vmap', 'patches', 1),
  ('map', 'xla', 1),
  ('vmap', 'xla', 1),
)


PRE_PRECOMPILE = (
  '† marks a row run before `jmeta.precompile`, whose peak RSS still has the '
  "compiler's freed memory under the step's"
)


def rss_text(r) -> str:
  """The row's peak RSS in MiB, marked † if it ran before ``jmeta.precompile``."""
  return f'{r["peak_rss_mib"]:.0f}' + ('' if r.get('precompiled') else '†')


def repeats_text(results) -> str:
  """How many timed calls the cells' medians are over ('3', or '3 or 5' after --append)."""
  counts = sorted({len(r['step_times_s']) for r in results if 'step_times_s' in r})
  return ' or '.join(map(str, counts)) or '0'


def _learn2learn_reference():
  import importlib.util

  path = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), 'learn2learn_reference.py'
  )
  spec = importlib.util.spec_from_file_location('learn2learn_reference', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def reference_table(report, reference) -> str:
  """jmeta against learn2learn (``learn2learn_reference.py``).

  If the reference report timed jmeta too, interleaved with learn2learn
  (``--jmeta-python``), the table is that comparison; otherwise jmeta's fastest
  cell of ``report`` against learn2learn's time.
  """
  lines = [
    '| estimator | config | jmeta (s) | learn2learn (s) | speedup | jmeta peak RSS '
    '(MiB) | learn2learn peak RSS (MiB) | RSS ratio |',
    '|---|---|---:|---:|---:|---:|---:|---:|',
  ]
  v = reference['versions']
  source = (
    f'learn2learn {v["learn2learn"]} on torch {v["torch"]} '
    f'(`benchmarks/results/cpu_learn2learn.md`, run {reference["date"][:10]}), the '
    'same episodes and model, tasks in a Python loop.'
  )
  table = _learn2learn_reference().comparison(reference)
  if any(row['jmeta'] for row in table):
    for row in table:
      for d, ours in row['jmeta'].items():
        lo, hi = row['speedup_range'][d]
        setup_ = 'map + patches' + (f' on {d} devices' if d > 1 else '')
        lines.append(
          f'| {row["estimator"]} | {row["config"]} | {ours["step_s"]:.3f} '
          f'({setup_}) | {row["learn2learn_s"]:.3f} | {row["speedup"][d]:.2f}x '
          f'({lo:.2f}–{hi:.2f}) | {ours["peak_rss_mib"]:.0f} | '
          f'{row["learn2learn_rss_mib"]:.0f} | '
          f'{ours["peak_rss_mib"] / row["learn2learn_rss_mib"]:.2f} |'
        )
    lines += [
      '',
      source + f' jmeta ran right after each learn2learn cell, {reference["rounds"]} '
      'rounds of every cell; times are medians over rounds, and the speedup is the '
      "median over rounds of learn2learn's time over jmeta's in the same round "
      '(range in brackets).',
    ]
    return '\n'.join(lines) + '\n'
  for ref in reference['results']:
    ours = fastest(report['results'], ref['estimator'], ref['config'])
    if 'error' in ref or ours is None:
      continue
    lines.append(
      f'| {ref["estimator"]} | {ref["config"]} | {ours["step_s"]:.3f} '
      f'({setup(ours)}) | {ref["step_s"]:.3f} | '
      f'{ref["step_s"] / ours["step_s"]:.2f}x | {ours["peak_rss_mib"]:.0f} | '
      f'{ref["peak_rss_mib"]:.0f} | {ours["peak_rss_mib"] / ref["peak_rss_mib"]:.2f} |'
    )
  lines += [
    '',
    source + " Speedup is learn2learn's seconds per meta-update over jmeta's.",
  ]
  return '\n'.join(lines) + '\n'


def readme_table(report, reference=None) -> str:
  """The README's table: seconds per meta-update for each batching + conv, per row.

  With a learn2learn ``reference`` report, a second table compares the two.
  """
  hw, results = report['hardware'], report['results']
  head = ' | '.join(
    f'`{b}` + {c}' + (f' on {d} devices' if d > 1 else '') for b, c, d in README_CELLS
  )
  lines = [
    f'| estimator | config | variant | {head} | fastest | tasks/s | peak RSS (MiB) |',
    '|---|---|---|' + '---:|' * len(README_CELLS) + '---|---:|---:|',
  ]
  for key in _groups(results):
    cells = []
    for batching, conv, devices in README_CELLS:
      match = [x for x in results if _key(x) == (*key, batching, conv, devices)]
      if not match:
        cells.append('–')
      elif 'error' in match[0]:
        cells.append(match[0]['error'])
      else:
        cells.append(f'{match[0]["step_s"]:.3f}')
    best = fastest(results, *key)
    lines.append(
      f'| {key[0]} | {key[1]} | {key[2]} | {" | ".join(cells)} | '
      + (
        f'{setup(best)} | {best["tasks_per_s"]:.1f} | {rss_text(best)} |'
        if best
        else '– | – | – |'
      )
    )
  lines += [
    '',
    f'Seconds per meta-update (median of {repeats_text(results)}); "–": not run. '
    f'Hardware: {hw["cpu_model"]}, {hw["cpu_count"]} CPUs, backend '
    f'`{hw["backend"]}`; jax {hw["jax"]}. Commands and notes: '
    f'`benchmarks/results/{hw["backend"]}_meta_step.md`.'
    + (
      f' {PRE_PRECOMPILE[0].upper()}{PRE_PRECOMPILE[1:]}.'
      if any(
        not best.get('precompiled')
        for best in (fastest(results, *key) for key in _groups(results))
        if best
      )
      else ''
    ),
  ]
  if reference is not None:
    lines += ['', reference_table(report, reference).rstrip('\n')]
  return '\n'.join(lines) + '\n'


def write_readme(path: str, report, reference=None) -> None:
  """Replaces the text between the README markers with ``readme_table(...)``."""
  with open(path) as f:
    text = f.read()
  if README_BEGIN not in text or README_END not in text:
    raise ValueError(f'{path} has no {README_BEGIN!r} ... {README_END!r} markers.')
  before, rest = text.split(README_BEGIN, 1)
  _, after = rest.split(README_END, 1)
  with open(path, 'w') as f:
    f.write(
      before
      + README_BEGIN
      + '\n'
      + readme_table(report, reference)
      + README_END
      + after
    )


def _key(r):
  return (
    r['estimator'],
    r['config'],
    r['variant'],
    r['batching'],
    r['conv_impl'],
    devices_of(r),
  )


def _order(r):
  names = [ESTIMATOR_NAMES, tuple(CONFIGS), VARIANTS, BATCHING, CONV_IMPLS]
  return (
    names[1].index(r['config']),
    *(n.index(v) for n, v in zip(names, _key(r))),
    devices_of(r),
  )


def run_stamp(script: str) -> dict:
  """A report's ``date`` (local time, to the second) and ``command`` (how ``script``
  was run), the first two fields of every benchmark report."""
  return {
    'date': datetime.datetime.now().astimezone().isoformat(timespec='seconds'),
    'command': shlex.join(['python', os.path.relpath(script), *sys.argv[1:]]),
  }


def save_report(out: str, name: str, report: dict, text: str) -> str:
  """Writes ``report`` as ``<out>/<name>.json`` and ``text`` beside it as ``.md``."""
  os.makedirs(out, exist_ok=True)
  stem = os.path.join(out, name)
  with open(stem + '.json', 'w') as f:
    json.dump(report, f, indent=2)
  with open(stem + '.md', 'w') as f:
    f.write(text)
  print(f'wrote {stem}.json and {stem}.md')
  return stem


def report_stem(args, hw):
  return os.path.join(args.out, f'{hw["backend"]}_meta_step')


def load_previous(args, hw):
  """The report already in --out, for --append; None if there is none."""
  path = report_stem(args, hw) + '.json'
  if not (args.append and os.path.exists(path)):
    return None
  with open(path) as f:
    return json.load(f)


def write_report(args, commands, results, total_s, hw, previous, complete=True):
  """Writes the JSON and markdown reports; returns their common path stem."""
  notes = list(previous['notes']) if previous else []
  if previous:
    new = {_key(r) for r in results}
    old = [r for r in previous['results'] if _key(r) not in new]
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
    'chunk_size': CHUNK_SIZE,
    'inner_learning_rate': INNER_LEARNING_RATE,
    'outer_optimizer': 'adam(1e-3)',
    'configs': CONFIGS,
    'hardware': hw,
    'notes': notes,
    'results': results,
    'total_s': total_s,
  }
  os.makedirs(args.out, exist_ok=True)
  stem = report_stem(args, hw)
  with open(stem + '.json', 'w') as f:
    json.dump(report, f, indent=2)
  with open(stem + '.md', 'w') as f:
    f.write(markdown(report))
  return stem


def main(argv=None):
  args = parse_args(argv)
  if args.single:
    print(json.dumps(run_cell(json.loads(args.single), args.repeats)), flush=True)
    return

  if args.readme:
    import jax

    stem = os.path.join(args.out, f'{jax.default_backend()}_meta_step')
    with open(stem + '.json') as f:
      report = json.load(f)
    reference = None
    ref_path = os.path.join(args.out, f'{jax.default_backend()}_learn2learn.json')
    if os.path.exists(ref_path):
      with open(ref_path) as f:
        reference = json.load(f)
    write_readme(args.readme, report, reference)
    print(f'wrote the table of {stem}.json into {args.readme}')
    return

  command = shlex.join(['python', os.path.relpath(__file__), *sys.argv[1:]])
  start = time.perf_counter()
  hw = hardware()
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
      best = fastest(results, *MAXPOOL_CELL)
      cell = {
        'estimator': MAXPOOL_CELL[0],
        'config': MAXPOOL_CELL[1],
        'batching': best['batching'] if best else 'map',
        'conv_impl': best['conv_impl'] if best else 'patches',
        'variant': 'maxpool',
        'devices': devices_of(best) if best else 1,
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
  stem = write_report(args, commands, results, elapsed, hw, previous)
  print(f'wrote {stem}.json and {stem}.md')


if __name__ == '__main__':
  main()
