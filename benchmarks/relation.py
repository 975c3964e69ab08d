"""Relation networks: g on concatenated pairs against the factored first convolution.

Times the relation module g on one Omniglot test episode's (support and query,
class) pairs, 'support' batch norm as the learner runs it, two ways:

* ``pairs``: ``relation_module(...).apply`` on ``relation_pairs(maps, classes)``,
  m * n convolutions of 2C channels (how ``relation_network`` computed it before);
* ``factored``: ``relation_scores``, whose first convolution is
  conv(c_k; W_c) + conv(f_i; W_f) (m + n convolutions and a broadcast sum).

Feature maps are random 7x7x64 (the encoder's output on 28x28 images); the scores
of the two agree to rounding (checked here and in ``tests/metric``). Writes
``results/<backend>_relation.{json,md}``.

  python benchmarks/relation.py --repeats 5
"""

from __future__ import annotations

import argparse
import time

import harness

# (n_way, k_shot, queries per class): the README's test episodes (5 queries per class).
EPISODES = {
  '5w1s': (5, 1, 5),
  '5w5s': (5, 5, 5),
  '20w1s': (20, 1, 5),
  '20w5s': (20, 5, 5),
}


def time_call(fn, args, repeats: int) -> tuple[float, float]:
  """(compile + first call, median of ``repeats`` timed calls) in seconds."""
  start = time.perf_counter()
  fn(*args).block_until_ready()
  first = time.perf_counter() - start
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn(*args).block_until_ready()
    times.append(time.perf_counter() - start)
  return first, sorted(times)[len(times) // 2]


def run_episode(name: str, repeats: int) -> dict:
  import jax
  import jax.numpy as jnp
  import numpy as np

  from jmeta.metric.relation import relation_module, relation_pairs, relation_scores

  n_way, k_shot, q = EPISODES[name]
  rng = np.random.default_rng(0)
  maps = jnp.asarray(rng.normal(size=(n_way * (k_shot + q), 7, 7, 64)), jnp.float32)
  classes = jnp.asarray(rng.normal(size=(n_way, 7, 7, 64)), jnp.float32)
  num_support = n_way * k_shot * n_way  # the support pairs supply g's statistics
  g = relation_module(filters=64, hidden=8)
  params = g.init(jax.random.key(0), relation_pairs(maps[:1], classes[:1]))
  pairs = jax.jit(
    lambda p, m, c: g.apply(
      p, relation_pairs(m, c), batch_norm='support', num_support=num_support
    )
  )
  factored = jax.jit(
    lambda p, m, c: relation_scores(
      p, m, c, batch_norm='support', num_support=num_support
    )
  )
  row = {'episode': name, 'pairs_count': maps.shape[0] * n_way}
  for label, fn in (('pairs', pairs), ('factored', factored)):
    first, step = time_call(fn, (params, maps, classes), repeats)
    row[f'{label}_s'], row[f'{label}_first_call_s'] = step, first
  diff = jnp.abs(pairs(params, maps, classes) - factored(params, maps, classes))
  row['max_abs_difference'] = float(jnp.max(diff))
  row['speedup'] = row['pairs_s'] / row['factored_s']
  return {**row, **harness.device_fields()}


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--episodes', default=','.join(EPISODES))
  p.add_argument('--repeats', type=int, default=5)
  p.add_argument('--note', action='append', default=[], help='a line for the report')
  p.add_argument('--out', default=harness.RESULTS)
  args = p.parse_args(argv)
  names = [n for n in args.episodes.split(',') if n]
  unknown = sorted(set(names) - set(EPISODES))
  if unknown:
    raise SystemExit(f'unknown episodes {unknown}; expected some of {list(EPISODES)}.')
  rows = []
  for name in names:
    rows.append(run_episode(name, args.repeats))
    print(rows[-1], flush=True)
  backend = rows[0]['backend']
  report = {
    **harness.run_stamp(__file__),
    'notes': args.note,
    'rows': rows,
  }
  harness.save_report(
    args.out, f'{backend}_relation', report, markdown(report, backend)
  )


def markdown(report: dict, backend: str) -> str:
  lines = [
    f'# Relation module: concatenated pairs against the factored first convolution ({backend})',
    '',
    f'- Date: {report["date"]}; command: `{report["command"]}`',
    '- One test episode (5 queries per class), 64-filter relation module on random '
    "7x7x64 feature maps, 'support' batch norm; median of the timed calls.",
    *(f'- {n}' for n in report['notes']),
    '',
    '| episode | pairs | on pairs (s) | factored (s) | speedup | max abs difference |',
    '|---|---:|---:|---:|---:|---:|',
  ]
  for r in report['rows']:
    lines.append(
      f'| {r["episode"]} | {r["pairs_count"]} | {r["pairs_s"]:.3f} | '
      f'{r["factored_s"]:.3f} | {r["speedup"]:.1f}x | {r["max_abs_difference"]:.1e} |'
    )
  return '\n'.join(lines) + '\n'


if __name__ == '__main__':
  main()
