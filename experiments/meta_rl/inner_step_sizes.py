"""How one inner policy-gradient step changes a trained MAML-RL policy, by its size.

  python -m experiments.meta_rl.inner_step_sizes --workdir=RUN --out=RUN/inner_step_sizes.json
  python -m experiments.meta_rl.inner_step_sizes --out=... \
      --config=experiments/meta_rl/configs/locomotion.py [--config.env.backend=...]

At the params of a run's latest checkpoint (``--workdir``: its ``config.json`` and
checkpoint), or of a config's initial policy (``--config``, the params its training
starts from), on ``--tasks`` tasks of the run's family: per task, one batch of
``--episodes`` episodes (default: the run's evaluation's, ``config.eval.num_episodes``)
with that policy, the run's advantages and the gradient g of the naive surrogate
(the inner step of ``jmeta.rl.maml_rl``), then for each rate a in ``--rates`` the
policy theta + a g, sampled on as many fresh episodes with the same key for every
rate. Per rate, mean and 95% CI over tasks of:

* ``return_after``: the mean return of the stepped policy (``return_before``: the
  trained policy's, on the batch the step was computed from);
* ``change``: ``return_after`` minus that of rate 0 (the trained policy itself) on
  the same task, a paired difference: every rate's episodes use the same key, so
  their reset states and action noise are the same (common random numbers), and
  most of the sampling noise cancels. ``return_before`` is on other episodes, so
  its difference from any ``return_after`` carries the full noise of two batches;
* ``kl``: KL(pi_theta || pi_{theta + a g}) per step, averaged over the valid steps
  of that batch: how far the step moves the policy where it was measured.

Rate 0 and the rate the run trains with (``config.inner_learning_rate``) are always
included, so the sweep says whether that step helps, and whether a shorter or
longer one would. Writes the JSON and a Markdown table beside it (``.md``).
"""

from __future__ import annotations

import json
import pathlib

from absl import app, flags, logging


def define_flags() -> None:
  """Defined when the command runs, not on import (see ``omniglot.probe``)."""
  from ml_collections import config_flags  # noqa: PLC0415

  flags.DEFINE_string('workdir', None, 'A trained MAML-RL workdir.')
  config_flags.DEFINE_config_file(
    'config', None, 'Without --workdir: a config whose initial policy is stepped.'
  )
  flags.DEFINE_string('out', None, 'Where to write the JSON.', required=True)
  flags.DEFINE_list(
    'rates', ['0', '0.025', '0.05', '0.1', '0.2', '0.4'], 'Inner step sizes.'
  )
  flags.DEFINE_integer('tasks', 20, 'Tasks (each its own batch of episodes).')
  flags.DEFINE_integer(
    'episodes',
    None,
    "Episodes per batch (default: the run's config.eval.num_episodes).",
  )
  flags.DEFINE_integer('seed', 3_000_017, 'Key of the tasks and episodes.')


def step_size_sweep(
  config, params, rates, *, tasks: int, episodes: int, seed: int
) -> dict:
  """``{'rates', 'return_before', 'return_after', 'kl'}``: per-task arrays (
  ``(tasks,)`` and ``(tasks, rates)``) of the quantities in the module doc."""
  import jax  # noqa: PLC0415
  import jax.numpy as jnp  # noqa: PLC0415

  from experiments.meta_rl import train  # noqa: PLC0415
  from jmeta import rl  # noqa: PLC0415

  env, policy = train.make_env(config), train.make_policy(config)
  settings = train.settings(config)
  rates = [float(r) for r in rates]
  key = jax.random.key(seed)
  sampled = rl.sample_tasks(env, jax.random.fold_in(key, 0), tasks)
  keys = jax.random.split(jax.random.fold_in(key, 1), tasks)

  def one_task(task, key):
    batch = rl.rollouts(env, policy, params, task, jax.random.fold_in(key, 0), episodes)
    advantages = rl.estimate_advantages(batch, settings)
    # policy_gradient_step is linear in its rate: theta + a g.
    unit = rl.policy_gradient_step(policy, params, batch, advantages, 1.0)
    step = jax.tree.map(jnp.subtract, unit, params)

    def at(rate):
      stepped = jax.tree.map(lambda p, g: p + rate * g, params, step)
      kl = policy.kl(params, stepped, batch.observations)
      kl = jnp.sum(kl * batch.valid) / jnp.sum(batch.valid)
      after = rl.rollouts(
        env, policy, stepped, task, jax.random.fold_in(key, 1), episodes
      )
      return jnp.mean(rl.episode_returns(after)), kl

    after, kl = jax.lax.map(at, jnp.asarray(rates, jnp.float32))
    return jnp.mean(rl.episode_returns(batch)), after, kl

  before, after, kl = jax.jit(jax.vmap(one_task))(sampled, keys)
  return {
    'rates': rates,
    'return_before': before,
    'return_after': after,
    'kl': kl,
  }


def summary(values) -> dict:
  import numpy as np  # noqa: PLC0415

  import jmeta  # noqa: PLC0415

  mean, ci = jmeta.mean_confidence_interval(np.asarray(values))
  return {'mean': float(mean), 'ci95': float(ci)}


def table(result: dict) -> str:
  """The Markdown table of a sweep's JSON."""
  before = result['return_before']
  lines = [
    f'Return before the step: {before["mean"]:.1f} ± {before["ci95"]:.1f} '
    f'({result["tasks"]} tasks of {result["episodes"]} episodes, mean ± 95% CI over '
    'tasks).',
    '',
    '| rate | return after one step | change against rate 0 (paired) '
    '| KL(before ‖ after) per step |',
    '| --- | --- | --- | --- |',
  ]
  for row in result['by_rate']:
    trained = ' (trained with)' if row['rate'] == result['trained_rate'] else ''
    lines.append(
      f'| {row["rate"]:g}{trained} | {row["return_after"]["mean"]:.1f} ± '
      f'{row["return_after"]["ci95"]:.1f} | {row["change"]["mean"]:+.1f} ± '
      f'{row["change"]["ci95"]:.1f} | {row["kl"]["mean"]:.4f} ± '
      f'{row["kl"]["ci95"]:.4f} |'
    )
  return '\n'.join(lines) + '\n'


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  import numpy as np  # noqa: PLC0415

  from experiments.common.run_info import run_info  # noqa: PLC0415
  from experiments.meta_rl import cosines  # noqa: PLC0415

  f = flags.FLAGS
  out = pathlib.Path(f.out)
  if out.exists():
    raise app.UsageError(f'{out} exists; move it away to measure again.')
  try:
    rates = {float(r) for r in f.rates}
  except ValueError as error:
    raise app.UsageError(f'--rates must be numbers: {f.rates}') from error
  if any(r < 0 for r in rates):
    raise app.UsageError(f'--rates must not be negative: {f.rates}')
  if f.tasks < 2:
    raise app.UsageError(f'--tasks must be at least 2 (for a CI), got {f.tasks}.')
  if (f.workdir is None) == (f.config is None):
    raise app.UsageError('give either --workdir (a trained run) or --config.')
  workdir = None if f.workdir is None else pathlib.Path(f.workdir)
  config, params, step = cosines.load(workdir, f.config)
  trained_rate = float(config.inner_learning_rate)
  rates = sorted({0.0, *rates, trained_rate})
  episodes = config.eval.num_episodes if f.episodes is None else f.episodes
  if episodes < 1:
    raise app.UsageError(f'--episodes must be positive, got {episodes}.')
  sweep = step_size_sweep(
    config, params, rates, tasks=f.tasks, episodes=episodes, seed=f.seed
  )
  after, kl = np.asarray(sweep['return_after']), np.asarray(sweep['kl'])
  result = {
    'run': run_info(),
    'workdir': f.workdir,
    'step': step,
    'config': config.to_dict(),
    'tasks': f.tasks,
    'episodes': episodes,
    'seed': f.seed,
    'trained_rate': trained_rate,
    'log_std': np.asarray(params['log_std']).tolist(),
    'return_before': summary(sweep['return_before']),
    'by_rate': [
      {
        'rate': r,
        'return_after': summary(after[:, i]),
        # rates are sorted and include 0: column 0 is the unstepped policy.
        'change': summary(after[:, i] - after[:, 0]),
        'kl': summary(kl[:, i]),
      }
      for i, r in enumerate(sweep['rates'])
    ],
  }
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(result, indent=2))
  out.with_suffix('.md').write_text(table(result))
  logging.info('wrote %s', out)


if __name__ == '__main__':
  define_flags()
  app.run(main)
