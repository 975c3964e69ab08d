"""Where a meta-update's time goes: the compiled step's operations, by time.

Builds ``meta_step.py``'s cell (the same learner, episodes and Adam step), compiles
and warms it up, then runs ``--steps`` steps under ``jax.profiler`` and sums each
XLA operation's time on the host threads. Each operation is named with its output
shape, read from the compiled HLO, and put in a kind: matmuls (a ``dot``, or a
fusion whose computation has one, as XLA:CPU's YNNPACK fusions do), convolutions,
concatenates (the patches of ``conv_impl='patches'``), copies and transposes, and
the other fusions: elementwise and reductions (batch norm, ReLU, pooling and their
gradients):

  python benchmarks/profile_step.py --estimator protonet --config 60w5s5q \\
      --variant maxpool --batching vmap

Writes ``<backend>_profile_<estimator>_<config>_<variant>.json`` and ``.md`` to
``--out``. Operations can overlap on the two threads, so their sum may exceed the
wall-clock step; the shares are of that sum.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import tempfile

import harness

# Host-side events of the runtime, not operations of the program.
RUNTIME = re.compile(r'^(\$|Thunk|Pjit|Common|Slinky|Parse|Allocate|end: |PjRt)')
INSTRUCTION = re.compile(r'^\s*(?:ROOT )?%?([\w.\-]+) = (\S+) ([\w\-]+)\(')
COMPUTATION = re.compile(r'^(?:ENTRY )?%?([\w.\-]+) \(')
CALLS = re.compile(r'calls=%?([\w.\-]+)')


def kind_of(name: str, opcode: str, called: set[str]) -> str:
  """The kind of an instruction: its opcode, and the opcodes of what it calls."""
  if opcode == 'dot' or 'dot' in called:
    return 'matmul'
  if opcode == 'convolution' or 'convolution' in called:
    return 'convolution'
  if opcode == 'concatenate':
    return 'concatenate (patches)'
  if opcode in ('copy', 'transpose') or name.startswith(('copy', 'transpose')):
    return 'copy or transpose'
  if opcode == 'fusion':
    return 'elementwise or reduction fusion'
  return 'other'


def instructions(hlo_text: str) -> dict[str, tuple[str, str]]:
  """``{instruction name: (output shape, kind)}`` of a compiled HLO module's text."""
  opcodes = collections.defaultdict(set)  # computation name: its opcodes
  found = []  # (name, shape, opcode, called computation)
  computation = None
  for line in hlo_text.splitlines():
    if m := COMPUTATION.match(line):
      computation = m.group(1)
    elif m := INSTRUCTION.match(line):
      name, shape, opcode = m.groups()
      opcodes[computation].add(opcode)
      calls = CALLS.search(line)
      found.append((name, shape, opcode, calls.group(1) if calls else None))
  return {
    name: (re.sub(r'\{[^}]*\}', '', shape), kind_of(name, opcode, opcodes[called]))
    for name, shape, opcode, called in found
  }


def op_times(trace_dir: str) -> collections.Counter:
  """Microseconds per operation name over every event of the perfetto trace."""
  paths = glob.glob(os.path.join(trace_dir, '**', '*.trace.json.gz'), recursive=True)
  with gzip.open(max(paths, key=os.path.getmtime)) as f:
    trace = json.load(f)
  events = trace['traceEvents'] if isinstance(trace, dict) else trace
  times = collections.Counter()
  for e in events:
    if e.get('ph') == 'X' and 'dur' in e and not RUNTIME.match(e['name']):
      times[e['name']] += e['dur']
  return times


def profile(cell: dict, steps: int) -> dict:
  import jax
  import optax

  import jmeta

  cfg = harness.CONFIGS[cell['config']]
  batch = harness.random_task_batch(
    cfg['n_way'], cfg['k_shot'], cfg['meta_batch'], cfg.get('q_query', 1)
  )
  estimator, params = harness.make_learner(cell, cfg)
  trainer = jmeta.make_meta_trainer(estimator, optax.adam(1e-3))
  state = trainer.init(params)
  timing, state, _ = harness.time_step(trainer, state, batch, 3)
  hlo = jax.jit(trainer.step).lower(state, batch).compile().as_text()
  known = instructions(hlo)
  with tempfile.TemporaryDirectory() as trace_dir:
    jax.profiler.start_trace(trace_dir, create_perfetto_trace=True)
    for _ in range(steps):
      state, _ = jax.block_until_ready(trainer.step(state, batch))
    jax.profiler.stop_trace()
    times = op_times(trace_dir)
  ops = []
  for name, us in times.most_common():
    shape, kind = known.get(name, ('?', 'other'))
    ops.append(
      {'name': name, 'shape': shape, 'kind': kind, 'ms_per_step': us / steps / 1000}
    )
  return {'step_s': timing['step_s'], 'steps_traced': steps, 'ops': ops}


def markdown(report: dict, top: int) -> str:
  hw, cell, ops = report['hardware'], report['cell'], report['ops']
  total = sum(op['ms_per_step'] for op in ops)
  kinds = collections.Counter()
  for op in ops:
    kinds[op['kind']] += op['ms_per_step']
  lines = [
    f'# Profile of one meta-update: {cell["estimator"]} {cell["config"]} '
    f'{cell["variant"]} ({cell["batching"]} + {cell["conv_impl"]})',
    '',
    f'`{report["command"]}` at commit {report["commit"]} on {hw["cpu_model"]} '
    f'({hw["cpu_count"]} cores), jax {hw["jax"]}, {report["date"]}. '
    f'{report["note"]}'.rstrip(),
    '',
    f'Step (median of 3 untraced calls): {1000 * report["step_s"]:.0f} ms. '
    f'Operations, summed over both threads and averaged over '
    f'{report["steps_traced"]} traced steps: {total:.0f} ms per step.',
    '',
    '| kind | ms per step | share |',
    '|---|---:|---:|',
    *[f'| {k} | {ms:.1f} | {100 * ms / total:.1f}% |' for k, ms in kinds.most_common()],
    '',
    f'The {top} longest operations:',
    '',
    '| operation | output shape | kind | ms per step | share |',
    '|---|---|---|---:|---:|',
    *[
      f'| {op["name"]} | `{op["shape"]}` | {op["kind"]} | {op["ms_per_step"]:.1f} | '
      f'{100 * op["ms_per_step"] / total:.1f}% |'
      for op in ops[:top]
    ],
  ]
  return '\n'.join(lines) + '\n'


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--estimator', choices=harness.ESTIMATOR_NAMES, default='protonet')
  p.add_argument('--config', choices=list(harness.CONFIGS), default='60w5s5q')
  p.add_argument('--variant', choices=('strided', 'maxpool'), default='maxpool')
  p.add_argument('--batching', choices=('vmap', 'map'), default='vmap')
  p.add_argument('--conv-impl', default='patches', help="conv4's conv_impl")
  p.add_argument('--steps', type=int, default=5, help='traced steps')
  p.add_argument('--top', type=int, default=20, help='operations listed')
  p.add_argument('--note', default='', help='conditions to state beside the table')
  p.add_argument('--out', default=harness.RESULTS)
  args = p.parse_args(argv)
  if args.steps < 1 or args.top < 1:
    p.error('--steps and --top must be at least 1')
  cell = {
    'estimator': args.estimator,
    'config': args.config,
    'variant': args.variant,
    'batching': args.batching,
    'conv_impl': args.conv_impl,
    'devices': 1,
  }
  report = {
    **harness.run_stamp(__file__),
    'hardware': harness.hardware(),
    'note': args.note,
    'cell': cell,
    **profile(cell, args.steps),
  }
  backend = report['hardware']['backend']
  name = f'{backend}_profile_{args.estimator}_{args.config}_{args.variant}'
  harness.save_report(args.out, name, report, markdown(report, args.top))


if __name__ == '__main__':
  main()
