"""What the benchmark scripts share: the measured workload and the measuring harness.

* The workload: ``meta_step.py``'s episode ``CONFIGS`` (MAML's Omniglot shapes),
  the inner learning rate, ``random_task_batch`` and ``make_estimator`` for a cell.
* Timing: ``time_step`` (``jmeta.precompile``, a warm-up, the median of timed
  calls) and ``peak_rss_mib``.
* Subprocess cells: ``run_json`` runs one cell in a fresh process and reads the
  JSON line it prints last; ``interleave`` runs cells under several settings,
  round by round with the settings' order alternating, and ``median_table``
  compares the settings' median step times.
* Reports: ``run_stamp`` (date, command and commit), ``hardware`` and ``device_fields``,
  ``interleaved_parser`` and ``interleaved_heading`` for interleaved comparisons,
  ``save_report`` (``<name>.json`` and ``<name>.md``).
* Flags: ``choice_list``, an argparse type for comma-separated names.

The scripts run as ``python benchmarks/<script>.py``, which puts this folder first
on ``sys.path``, so they ``import harness``; importing it puts the repository root
second, so that the scripts that measure an experiment's step import
``experiments`` (not an installed package). Only the standard library is imported
at module level: ``learn2learn_reference.py`` imports this module in a venv
without jax.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
  sys.path.insert(1, _ROOT)

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
ESTIMATOR_NAMES = ('maml', 'fomaml', 'reptile', 'maml_plus_plus', 'protonet')
# Where the scripts write their reports by default (``--out``).
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'results')


def choice_list(choices):
  """An argparse ``type``: comma-separated names, each one of ``choices``."""

  def parse(text):
    items = [s.strip() for s in text.split(',') if s.strip()]
    bad = [s for s in items if s not in choices]
    if bad:
      raise argparse.ArgumentTypeError(f'unknown {bad}; expected some of {choices}')
    return items

  return parse


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


def make_learner(cell, cfg):
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
  if cell['estimator'] == 'maml_plus_plus':
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
  estimator = jmeta.make_learner(
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


def peak_rss_mib() -> float:
  """This process's peak resident memory so far (``ru_maxrss``), in MiB."""
  # ru_maxrss is in KiB on Linux.
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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


def cpu_default_cell(estimator: str, config: str, batching: str) -> dict:
  """``meta_step.py``'s cell at the library's CPU defaults: patches convolutions,
  one device, ProtoNet on its max-pool network and the others on the strided one."""
  return {
    'estimator': estimator,
    'config': config,
    'batching': batching,
    'conv_impl': 'patches',
    'variant': 'maxpool' if estimator == 'protonet' else 'strided',
    'devices': 1,
  }


@contextlib.contextmanager
def worktrees(root: str, revs):
  """Detached git worktrees of ``revs`` (commits of the repository at ``root``) in a
  temporary folder, for the block; yields their paths and removes them after."""
  with tempfile.TemporaryDirectory() as where:
    paths = []
    try:
      for rev in revs:
        path = os.path.join(where, f'jmeta-{rev}')
        subprocess.run(
          ['git', 'worktree', 'add', '--detach', path, rev],
          cwd=root,
          check=True,
          capture_output=True,
        )
        paths.append(path)
      yield paths
    finally:
      for path in paths:
        subprocess.run(
          ['git', 'worktree', 'remove', '--force', path], cwd=root, check=False
        )


def cpu_model() -> str:
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def hardware() -> dict:
  """CPU, backend, devices and versions, for a report's ``hardware`` field."""
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


def device_fields() -> dict:
  """Backend, device kind, CPU count and jax version, for a benchmark row."""
  import jax

  return {
    'backend': jax.default_backend(),
    'device_kind': jax.devices()[0].device_kind,
    'cpu_count': os.cpu_count(),
    'jax': jax.__version__,
  }


def run_stamp(script: str) -> dict:
  """A report's ``date`` (local time, to the second), ``command`` (how ``script``
  was run) and ``commit`` (the repository's HEAD, '+dirty' if the work tree had
  changes), the first fields of every benchmark report."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(script)))

  def git(*args):
    out = subprocess.run(['git', *args], cwd=root, capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else None

  commit = git('rev-parse', 'HEAD')
  if commit and git('status', '--porcelain', '--untracked-files=no'):
    commit += '+dirty'
  return {
    'date': datetime.datetime.now().astimezone().isoformat(timespec='seconds'),
    'command': shlex.join(['python', os.path.relpath(script), *sys.argv[1:]]),
    'commit': commit,
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


def interleaved_parser(description: str) -> argparse.ArgumentParser:
  """A parser with the flags of an interleaved comparison (``interleave``):
  ``--rounds``, ``--repeats``, ``--timeout``, ``--out`` and ``--note``."""
  p = argparse.ArgumentParser(description=description)
  p.add_argument('--rounds', type=int, default=3)
  p.add_argument(
    '--repeats', type=int, default=5, help='timed calls per cell and round'
  )
  p.add_argument('--timeout', type=float, default=900, help='seconds per cell')
  p.add_argument('--out', default=RESULTS)
  p.add_argument('--note', default='', help='conditions to state beside the table')
  return p


def interleaved_heading(title: str, stamp: dict, hardware: dict, args) -> str:
  """A comparison report's title and first sentences: how it ran, where, and what
  its medians are over (``args`` from ``interleaved_parser``)."""
  return (
    f'# {title}\n\n'
    f'`{stamp["command"]}` on {hardware["cpu_model"]} ({hardware["cpu_count"]} cores), '
    f'jax {hardware["jax"]}, jaxlib {hardware["jaxlib"]}, {stamp["date"]}. '
    f'Median over {args.rounds} interleaved rounds of the per-round median of '
    f'{args.repeats} steps'
  )


def comparison_main(
  script: str, title: str, detail: str, run, table, name: str, argv=None
) -> None:
  """The whole main of an interleaved comparison without flags of its own: parses
  ``interleaved_parser``'s flags, runs ``run(args)`` (its results), and writes
  ``<backend>_<name>.json`` and ``.md``: ``interleaved_heading``, then ``detail``,
  the note and ``table(results)``."""
  args = interleaved_parser(title).parse_args(argv)
  stamp = run_stamp(script)
  hw = hardware()
  results = run(args)
  report = {**stamp, 'hardware': hw, 'note': args.note, 'results': results}
  heading = interleaved_heading(title, stamp, hw, args)
  text = f'{heading}{detail} {args.note}\n\n' + table(results)
  print(text)
  save_report(args.out, f'{hw["backend"]}_{name}', report, text)


def interleave(cells, settings: dict, run_one, rounds: int) -> list[dict]:
  """``run_one(cell, setting, round)`` for every cell and setting, ``rounds`` times.

  Within a round each cell runs under every setting back to back, the settings'
  order alternating between rounds, so drift of a shared machine falls on all
  settings alike. Prints each result as a JSON line as it comes.
  """
  results = []
  names = list(settings)
  for r in range(rounds):
    order = names if r % 2 == 0 else names[::-1]
    for cell in cells:
      for setting in order:
        out = {**run_one(cell, setting, r), 'setting': setting, 'round': r}
        print(json.dumps(out), flush=True)
        results.append(out)
  return results


def median_table(results, cells, settings, key, label: str, ratio) -> str:
  """A markdown row per cell: each setting's median ``step_s``, and their ratio.

  ``key(result)`` gives a result's cell; ``cells`` are tuples whose fields head the
  first columns (``label``: their names, ``' | '``-separated). ``ratio`` is
  ``(numerator setting, denominator setting, column header)``. A setting whose runs
  failed shows how many did.
  """
  names = list(settings)
  numerator, denominator, header = ratio
  lines = [
    f'| {label} | ' + ' | '.join(f'{n}: step s' for n in names) + f' | {header} |',
    '|' + '---|' * (label.count('|') + len(names) + 2),
  ]
  for cell in cells:
    shown, medians = [], {}
    for setting in names:
      rows = [r for r in results if key(r) == cell and r['setting'] == setting]
      failed = sum('error' in r for r in rows)
      if failed or not rows:
        shown.append(f'failed in {failed} of {len(rows)} runs')
      else:
        medians[setting] = statistics.median(r['step_s'] for r in rows)
        shown.append(f'{medians[setting]:.3f}')
    if numerator in medians and denominator in medians:
      shown.append(f'{medians[numerator] / medians[denominator]:.2f}x')
    else:
      shown.append('n/a')
    lines.append(f'| {" | ".join(map(str, cell))} | {" | ".join(shown)} |')
  return '\n'.join(lines) + '\n'
