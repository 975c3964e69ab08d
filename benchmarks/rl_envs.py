"""Environment steps per second of jmeta.rl's task families, thousands in parallel.

Each cell runs ``num_envs`` environments (one task each, vmapped) for ``steps``
steps in one ``lax.scan`` inside one jitted call, with uniformly random actions
drawn in the scan (the RNG is part of the cost; no policy network). Reported:
environment steps (``num_envs * steps``) per second, median of the timed calls
after a compiling call. Writes ``results/<backend>_rl_envs.{json,md}``.

  python benchmarks/rl_envs.py --envs navigation,bandit,mdp --num-envs 1024,4096,16384

The brax locomotion families (``pip install 'jmeta[rl]'``) take a physics pipeline
after an '@', e.g. ``--envs half_cheetah_direction@spring,half_cheetah_direction@generalized``
(default: the family's own, 'spring').
"""

from __future__ import annotations

import argparse
import time

import harness

ENVS = (
  'navigation',
  'bandit',
  'mdp',
  'half_cheetah_direction',
  'half_cheetah_velocity',
  'ant_direction',
)


def make_env(name: str):
  from jmeta import rl

  family, _, backend = name.partition('@')
  brax = {'backend': backend} if backend else {}
  return {
    'navigation': lambda: rl.navigation_2d(),
    'bandit': lambda: rl.bernoulli_bandit(5, horizon=100),
    'mdp': lambda: rl.tabular_mdp(10, 5, horizon=10),
    'half_cheetah_direction': lambda: rl.half_cheetah_direction(**brax),
    'half_cheetah_velocity': lambda: rl.half_cheetah_velocity(**brax),
    'ant_direction': lambda: rl.ant_direction(**brax),
  }[family]()


def run_cell(name: str, num_envs: int, steps: int, repeats: int) -> dict:
  import jax
  import jax.numpy as jnp

  from jmeta import rl

  env = make_env(name)

  def random_action(key):
    if env.num_actions is None:
      return jax.random.uniform(key, env.action_shape, minval=-0.1, maxval=0.1)
    return jax.random.randint(key, (), 0, env.num_actions)

  def one_env(task, key):
    reset_key, action_key = jax.random.split(key)
    state, _ = env.reset(task, reset_key)

    def body(carry, k):
      state, total = carry
      state, _, reward, _ = env.step(task, state, random_action(k))
      return (state, total + reward), None

    (_, total), _ = jax.lax.scan(
      body, (state, jnp.zeros(())), jax.random.split(action_key, steps)
    )
    return total

  @jax.jit
  def run(key):
    tasks = rl.sample_tasks(env, jax.random.fold_in(key, 0), num_envs)
    keys = jax.random.split(jax.random.fold_in(key, 1), num_envs)
    return jnp.sum(jax.vmap(one_env)(tasks, keys))

  start = time.perf_counter()
  run(jax.random.key(0)).block_until_ready()
  first = time.perf_counter() - start
  times = []
  for i in range(repeats):
    start = time.perf_counter()
    run(jax.random.key(i + 1)).block_until_ready()
    times.append(time.perf_counter() - start)
  median = sorted(times)[len(times) // 2]
  return {
    'env': name,
    'num_envs': num_envs,
    'steps': steps,
    'median_s': median,
    'first_call_s': first,
    'steps_per_s': num_envs * steps / median,
    **harness.device_fields(),
  }


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--envs', default=','.join(ENVS))
  p.add_argument('--num-envs', default='1024,4096,16384')
  p.add_argument('--steps', type=int, default=100)
  p.add_argument('--repeats', type=int, default=5)
  p.add_argument('--note', action='append', default=[], help='a line for the report')
  p.add_argument('--out', default=harness.RESULTS)
  p.add_argument(
    '--name', default='', help='report file name (default: <backend>_rl_envs)'
  )
  args = p.parse_args(argv)
  names = [n for n in args.envs.split(',') if n]
  unknown = sorted({n.partition('@')[0] for n in names} - set(ENVS))
  if unknown:
    raise SystemExit(f'unknown envs {unknown}; expected some of {list(ENVS)}.')
  rows = []
  for name in names:
    for n in (int(x) for x in args.num_envs.split(',')):
      rows.append(run_cell(name, n, args.steps, args.repeats))
      print(rows[-1], flush=True)
  backend = rows[0]['backend']
  report = {**harness.run_stamp(__file__), 'notes': args.note, 'rows': rows}
  name = args.name or f'{backend}_rl_envs'
  harness.save_report(args.out, name, report, markdown(report, backend))


def markdown(report: dict, backend: str) -> str:
  lines = [
    f'# jmeta.rl environment throughput ({backend})',
    '',
    f'- Date: {report["date"]}; command: `{report["command"]}`',
    '- One task per environment, uniformly random actions drawn inside the scan, '
    'one jitted call per cell; median of the timed calls after a compiling one.',
    *(f'- {n}' for n in report['notes']),
    '',
    '| environment | parallel envs | steps each | median call (s) | env steps / s |',
    '|---|---:|---:|---:|---:|',
  ]
  for r in report['rows']:
    lines.append(
      f'| {r["env"]} | {r["num_envs"]:,} | {r["steps"]} | {r["median_s"]:.4f} | '
      f'{r["steps_per_s"]:,.0f} |'
    )
  return '\n'.join(lines) + '\n'


if __name__ == '__main__':
  main()
