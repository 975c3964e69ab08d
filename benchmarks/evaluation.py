"""Test-evaluation throughput: episodes per second of each Omniglot learner's test.

A run's test is its learner's prediction on 600 or 1,000 fixed episodes, evaluated
``config.eval.episodes_per_call`` at a time by one compiled call (the Omniglot
runner's ``make_evaluator``). Each cell here builds the learner of an Omniglot
config, with the config's own test-time settings (inner steps, minibatches,
batching), exactly as the runner does (``experiments.omniglot.learners``), and
times one such call on a fixed batch of random 28x28 episodes, in a fresh process:

  python benchmarks/evaluation.py                       # every algorithm, 5w1s, 20w1s
  python benchmarks/evaluation.py --algorithms maml,protonet --settings 5w1s
  python benchmarks/evaluation.py --algorithms protonet --eval-batching config,map

``--eval-batching`` times each cell under each listed test batching
(``config.eval.batching``; ``config`` keeps the config's own), one after another.

*compile* is the first call (tracing and compilation included); *call* is the
median of ``--repeats`` timed calls after one warm-up; *episodes/s* is episodes per
call over *call*; *peak RSS* is ``ru_maxrss`` of the cell's process. The episode
images do not change the work, so random ones stand in for Omniglot's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import harness

ALGORITHMS = (
  'maml',
  'fomaml',
  'reptile',
  'anil',
  'meta_sgd',
  'maml_plus_plus',
  'imaml',
  'protonet',
  'matching',
  'meta_networks',
  'mann',
  'relation',
  'siamese',
  'meta_lstm',
)
SETTINGS = ('5w1s', '5w5s', '20w1s', '20w5s')
EVAL_BATCHINGS = ('config', 'auto', 'vmap', 'map')


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument(
    '--algorithms', type=harness.choice_list(ALGORITHMS), default=list(ALGORITHMS)
  )
  p.add_argument(
    '--settings', type=harness.choice_list(SETTINGS), default=['5w1s', '20w1s']
  )
  p.add_argument(
    '--eval-batching',
    type=harness.choice_list(EVAL_BATCHINGS),
    default=['config'],
    help="test batchings to time per cell ('config': the config's own)",
  )
  p.add_argument('--repeats', type=int, default=3, help='timed calls per cell')
  p.add_argument('--timeout', type=float, default=600, help='seconds per cell')
  p.add_argument('--note', action='append', default=[], help='a line for the report')
  p.add_argument('--out', default=harness.RESULTS)
  p.add_argument('--single', help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.repeats < 1:
    p.error(f'--repeats must be at least 1, got {args.repeats}')
  return args


def config_of(algorithm: str, setting: str):
  """The Omniglot config of ``algorithm`` in ``setting``, as the runner loads it."""
  import importlib

  return importlib.import_module(
    f'experiments.omniglot.configs.{algorithm}'
  ).get_config(setting)


def run_cell(
  algorithm: str, setting: str, repeats: int, batching: str = 'config'
) -> dict:
  """Times one evaluation call of ``algorithm``'s test at ``setting``, its test
  episodes batched by ``batching`` ('config': as the config says)."""
  import jax

  from experiments.omniglot import learners

  config = config_of(algorithm, setting)
  if batching != 'config':
    config.eval.batching = batching
  n_way, k_shot = config.data.n_way, config.data.k_shot
  episodes = config.eval.episodes_per_call
  learner = learners.make_learner(config)
  example = jax.numpy.zeros((1, 28, 28, 1))
  params = learner.init(jax.random.key(0), example)
  batch = harness.random_task_batch(
    n_way, k_shot, episodes, q_query=config.data.q_query
  )
  call = jax.jit(lambda p, b: learner.accuracy(p, b, n_way))
  start = time.perf_counter()
  jax.block_until_ready(call(params, batch))
  compile_s = time.perf_counter() - start
  jax.block_until_ready(call(params, batch))  # warm-up
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(call(params, batch))
    times.append(time.perf_counter() - start)
  median = statistics.median(times)
  return {
    'algorithm': algorithm,
    'setting': setting,
    'episodes_per_call': episodes,
    'test_inner_steps': (
      config.eval.inner_steps if learners.takes_option(config, 'test_steps') else None
    ),
    'queries_per_class': config.data.q_query,
    'variant': config.model.variant,
    'batching': learners.eval_batching(config),
    'compile_s': compile_s,
    'call_s': median,
    'call_times_s': times,
    'episodes_per_s': episodes / median,
    'peak_rss_mib': harness.peak_rss_mib(),
  }


def markdown(report: dict) -> str:
  hw = report['hardware']
  lines = [
    f'# Test-evaluation throughput ({hw["backend"]})',
    '',
    f'- Date: {report["date"]}; command: `{report["command"]}`',
    f'- Hardware: {hw["cpu_model"]}, {hw["cpu_count"]} CPUs; backend '
    f'`{hw["backend"]}`; jax {hw["jax"]}',
    f'- Each cell: one compiled call evaluating `episodes_per_call` episodes with the '
    f"config's test-time settings; call: median of {report['repeats']} calls after "
    'a warm-up, in a fresh process per cell.',
    *[f'- {note}' for note in report['notes']],
    '',
    '| algorithm | setting | Conv4 | queries per class | test inner steps | '
    'episodes per call | test batching | compile (s) | call (s) | episodes/s | '
    'peak RSS (MiB) |',
    '|---|---|---|---:|---:|---:|---|---:|---:|---:|---:|',
  ]
  for r in report['results']:
    if 'error' in r:
      lines.append(f'| {r["algorithm"]} | {r["setting"]} | failed: {r["error"]} |')
      continue
    steps = '-' if r['test_inner_steps'] is None else r['test_inner_steps']
    lines.append(
      f'| {r["algorithm"]} | {r["setting"]} | {r["variant"]} | '
      f'{r["queries_per_class"]} | {steps} | {r["episodes_per_call"]} | '
      f'{r["batching"]} | {r["compile_s"]:.1f} | {r["call_s"]:.3f} | {r["episodes_per_s"]:.1f} | '
      f'{r["peak_rss_mib"]:.0f} |'
    )
  return '\n'.join(lines) + '\n'


def main(argv=None) -> None:
  args = parse_args(argv)
  if args.single:
    algorithm, setting, batching = args.single.split(':')
    print(json.dumps(run_cell(algorithm, setting, args.repeats, batching)), flush=True)
    return
  stamp = harness.run_stamp(__file__)
  # The cells import the experiments package from the repository root.
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  path = os.environ.get('PYTHONPATH')
  env = {**os.environ, 'PYTHONPATH': root + (os.pathsep + path if path else '')}
  results = []
  for algorithm in args.algorithms:
    for setting in args.settings:
      for batching in args.eval_batching:
        cell = {'algorithm': algorithm, 'setting': setting, 'batching': batching}
        command = [
          sys.executable,
          __file__,
          '--single',
          f'{algorithm}:{setting}:{batching}',
          '--repeats',
          str(args.repeats),
        ]
        result = harness.run_json(command, cell, timeout=args.timeout, env=env)
        results.append(result)
        shown = result.get('error') or f'{result["episodes_per_s"]:.1f} episodes/s'
        print(f'{algorithm} {setting} ({batching}): {shown}', flush=True)
  report = {
    **stamp,
    'hardware': harness.hardware(),
    'repeats': args.repeats,
    'notes': args.note,
    'results': results,
  }
  backend = report['hardware']['backend']
  harness.save_report(args.out, f'{backend}_evaluation', report, markdown(report))


if __name__ == '__main__':
  main()
