"""Training loop of the MAML-RL experiment: checkpoints, evaluation.

The task family is ``config.env.name``, one of ``ENVIRONMENTS``: 2D navigation, or
the brax locomotion families (``pip install 'jmeta[rl]'``).

One run meta-trains a Gaussian MLP policy with ``jmeta.rl.maml_rl`` through
``jmeta.make_meta_trainer`` and Adam (``config.outer='adam'``) or with TRPO
(``'trpo'``: ``jmeta.rl.maml_trpo_step``), tasks and episodes sampled inside the
jitted step,
logs to ``metrics.jsonl`` and TensorBoard, checkpoints so that a stopped run resumes
exactly, and ends with the returns after 0..``eval.steps`` policy-gradient steps on
held-out goals in ``results.json``, ``results.md`` and ``returns.png``; on 2D
navigation also the return of the goal-seeing controller (``ORACLES``).
"""

from __future__ import annotations

import inspect
import json
import math
import pathlib
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

import jmeta
from experiments import runs
from experiments.common import records
from experiments.common.checkpoint import Checkpointer
from experiments.common.progress import progress_bar
from experiments.common.run_info import logged_git_state, run_info
from experiments.common.workdir import JsonlWriter, prepare_workdir
from experiments.meta_rl import report
from jmeta import rl
from jmeta.validation import check_positive_int

OUTPUTS = ('results.json', 'results.md', 'returns.png')
OUTERS = ('adam', 'trpo')


class TRPOState(NamedTuple):
  """The outer loop's state under TRPO: the step and the params (no optimiser)."""

  step: jax.Array
  params: Any


# Changing these does not change the training trajectory.
MAY_DIFFER_ON_RESUME = ('num_iterations', 'log_every', 'checkpoint_every', 'eval.')
# Fields added since runs were started, at the values those runs trained with.
ADDED_FIELDS = {
  'env.name': 'navigation_2d',
  'env.observation': 'brax',
  'env.velocity': 'torso',
  'env.reset': 'brax',
}
# config.env.name -> the task family, built with config.env's other fields.
ENVIRONMENTS = {
  'navigation_2d': rl.navigation_2d,
  'half_cheetah_direction': rl.half_cheetah_direction,
  'half_cheetah_velocity': rl.half_cheetah_velocity,
  'ant_direction': rl.ant_direction,
}


def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises ``ValueError`` naming the field for values the factories do not check."""
  for field in ('num_tasks', 'num_episodes', 'num_iterations', 'log_every'):
    check_positive_int(config[field], f'config.{field}')
  check_positive_int(config.checkpoint_every, 'config.checkpoint_every')
  name = config.env.get('name', 'navigation_2d')
  if name not in ENVIRONMENTS:
    raise ValueError(
      f'config.env.name must be one of {tuple(ENVIRONMENTS)}, got {name!r}.'
    )
  accepted = inspect.signature(ENVIRONMENTS[name]).parameters
  unknown = sorted(set(config.env) - {'name'} - set(accepted))
  if unknown:
    raise ValueError(
      f'config.env.{unknown[0]} is not an option of {name}; it takes {tuple(accepted)}.'
    )
  if config.get('outer', 'adam') not in OUTERS:
    raise ValueError(f'config.outer must be one of {OUTERS}, got {config.outer!r}.')
  if config.eval.num_tasks < 2:
    raise ValueError(
      'config.eval.num_tasks must be at least 2 for a confidence interval, got '
      f'{config.eval.num_tasks}.'
    )
  check_positive_int(config.eval.num_episodes, 'config.eval.num_episodes')
  check_positive_int(config.eval.steps, 'config.eval.steps')


def make_env(config) -> rl.Environment:
  """The family ``config.env.name``, built with the other ``config.env`` fields."""
  options = {k: v for k, v in config.env.items() if k != 'name'}
  return ENVIRONMENTS[config.env.get('name', 'navigation_2d')](**options)


def make_policy(config, env: rl.Environment | None = None) -> rl.Policy:
  """A Gaussian MLP policy from the family's observation to its action."""
  env = make_env(config) if env is None else env
  (observations,), (actions,) = env.observation_shape, env.action_shape
  return rl.gaussian_mlp_policy(
    observations,
    actions,
    hidden_sizes=tuple(config.policy.hidden_sizes),
    init_log_std=config.policy.init_log_std,
  )


def goal_seeing(env: rl.Environment, task, key) -> jax.Array:
  """2D navigation's oracle: the return of a = clip(goal - position, +-0.1)."""
  seek = rl.Policy(
    lambda key: {}, lambda p, obs, key: jnp.clip(task.goal - obs, -0.1, 0.1), None
  )
  return rl.episode_returns(rl.rollout(env, seek, {}, task, key))


# config.env.name -> (results key, oracle(env, task, key) -> return): a baseline
# that sees the task, where the family has a simple one.
ORACLES = {'navigation_2d': ('goal_seeking_controller', goal_seeing)}


def settings(config) -> rl.AdvantageSettings:
  return rl.AdvantageSettings(**config.advantages.to_dict())


def make_learner(config, env, policy) -> jmeta.MetaLearner:
  outer = None
  if config.estimator == 'dice_full':
    outer = rl.AdvantageSettings(gamma=1.0, baseline='none', normalize=False)
  return rl.maml_rl(
    env,
    policy,
    estimator=config.estimator,
    inner_learning_rate=config.inner_learning_rate,
    inner_steps=config.inner_steps,
    num_episodes=config.num_episodes,
    settings=settings(config),
    outer_settings=outer,
  )


def make_outer_loop(config, env, policy, learner):
  """``(init_state(params), step(state, key) -> (state, metrics))``, jitted, for
  ``config.outer``: Adam through ``jmeta.make_meta_trainer``, or TRPO."""
  sample = lambda key: rl.sample_task_batch(env, key, config.num_tasks)  # noqa: E731
  if config.get('outer', 'adam') == 'adam':
    trainer = jmeta.outer_loop.with_task_sampling(
      jmeta.make_meta_trainer(learner, optax.adam(config.learning_rate)), sample
    )
    return (lambda params: trainer.init(learner.init(params))), trainer.step
  trpo_step = rl.maml_trpo_step(
    env,
    policy,
    estimator=config.estimator,
    inner_learning_rate=config.inner_learning_rate,
    inner_steps=config.inner_steps,
    num_episodes=config.num_episodes,
    settings=settings(config),
    **config.trpo.to_dict(),
  )

  @jax.jit
  def step(state: TRPOState, key):
    params, metrics = trpo_step(state.params, sample(key))
    return TRPOState(state.step + 1, params), {
      **metrics,
      'loss': -metrics['return_after'],
    }

  return (lambda params: TRPOState(jnp.zeros((), jnp.int32), params)), step


def make_evaluator(config, env, policy):
  """``evaluate(params) -> (tasks, steps + 1)`` mean returns on the held-out goals
  of ``config.eval.seed``, ``oracles() -> {name: (tasks,)}`` the return of the
  family's task-seeing baseline on the same goals (``ORACLES``; none for the
  locomotion families), and the goals (``(tasks, ...)``)."""
  key = jax.random.key(config.eval.seed)
  tasks = rl.sample_tasks(env, jax.random.fold_in(key, 0), config.eval.num_tasks)
  keys = jax.random.split(jax.random.fold_in(key, 1), config.eval.num_tasks)

  loop = rl.adaptation(
    env,
    policy,
    inner_learning_rate=config.inner_learning_rate,
    inner_steps=config.eval.steps,
    num_episodes=config.eval.num_episodes,
    settings=settings(config),
  )

  @jax.jit
  def evaluate(params):
    return jax.vmap(lambda task, k: rl.adaptation_returns(loop, params, task, k))(
      tasks, keys
    )

  known = ORACLES.get(config.env.get('name', 'navigation_2d'))

  @jax.jit
  def oracles():
    if known is None:
      return {}
    name, oracle = known
    return {name: jax.vmap(lambda task, k: oracle(env, task, k))(tasks, keys)}

  # A family's task is its goal, or a NamedTuple holding it (``goal``).
  return evaluate, oracles, np.asarray(getattr(tasks, 'goal', tasks))


def summary(values) -> dict:
  mean, ci = jmeta.mean_confidence_interval(np.asarray(values))
  return {'mean': np.atleast_1d(mean).tolist(), 'ci95': np.atleast_1d(ci).tolist()}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Meta-trains on 2D navigation, resuming from ``workdir``'s checkpoints if any,
  then evaluates; returns the results (and the final state)."""
  check_config(config)
  workdir = prepare_workdir(workdir, OUTPUTS)
  with runs.workdir_lock(workdir):
    return _train_and_evaluate(config, workdir)


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: pathlib.Path):
  checkpointer = Checkpointer(
    workdir,
    config.to_dict(),
    may_differ=MAY_DIFFER_ON_RESUME,
    added_fields=ADDED_FIELDS,
  )
  env = make_env(config)
  policy = make_policy(config, env)
  learner = make_learner(config, env, policy)
  root = jax.random.key(config.seed)
  init_params = policy.init(jax.random.fold_in(root, 0))
  init_state, step_fn = make_outer_loop(config, env, policy, learner)
  state = init_state(init_params)
  state, saved = checkpointer.resume(state)
  start_step, total = int(state.step), config.num_iterations
  logged = records.cut_jsonl(workdir / 'metrics.jsonl', start_step)
  timing_lines = records.cut_timing(workdir / 'timing.jsonl', start_step, saved)
  seconds_before = sum(t['seconds'] for t in timing_lines)
  tb = records.tensorboard_writer(workdir / 'tensorboard', logged)

  train_key = jax.random.fold_in(root, 1)
  code = logged_git_state()
  start = time.perf_counter()
  if start_step < total:
    jmeta.precompile(step_fn, state, train_key)
    logging.info('compiled the meta-step in %.1f s', time.perf_counter() - start)
  start = time.perf_counter()
  window, window_steps = None, 0

  def progress(done):
    seconds = time.perf_counter() - start
    return {
      'step': done,
      'train_seconds': seconds_before + seconds,
      'segment': {'from_step': start_step, 'seconds': seconds},
      **code,
    }

  with (
    JsonlWriter(workdir / 'metrics.jsonl') as writer,
    progress_bar(
      range(start_step, total),
      initial=start_step,
      total=total,
      desc=learner.name,
      unit='iteration',
    ) as bar,
  ):
    for step in bar:
      state, metrics = step_fn(state, jax.random.fold_in(train_key, step))
      window = metrics if window is None else jax.tree.map(jnp.add, window, metrics)
      window_steps += 1
      done = step + 1
      if done % config.log_every == 0 or done == total:
        if isinstance(state, jmeta.outer_loop.MetaTrainState):
          jmeta.raise_if_failed(state)
        record = {k: float(v) / window_steps for k, v in jax.device_get(window).items()}
        if not np.isfinite(record['loss']):
          raise FloatingPointError(f'the meta-loss became non-finite by {done}.')
        window, window_steps = None, 0
        record.update(
          step=done,
          episodes=done
          * config.num_tasks
          * config.num_episodes
          * (config.inner_steps + 1),
          elapsed_s=round(seconds_before + time.perf_counter() - start, 2),
        )
        writer.write(record)
        records.add_scalars(tb, record)
        bar.set_postfix(after=f'{record["return_after"]:.1f}')
        logging.info(
          'iteration %d: return before %.2f, after %.2f',
          done,
          record['return_before'],
          record['return_after'],
        )
      if done % config.checkpoint_every == 0 or done == total:
        checkpointer.save(done, state, progress(done))
  checkpointer.close()
  tb.close()
  jax.block_until_ready(state)
  stretch = time.perf_counter() - start
  trained = int(state.step) - start_step
  if trained:
    with JsonlWriter(workdir / 'timing.jsonl') as timing:
      timing.write(
        {
          'from_step': start_step,
          'to_step': int(state.step),
          'seconds': round(stretch, 1),
          **code,
        }
      )
  timings = records.read_jsonl(workdir / 'timing.jsonl')
  train_seconds = sum(t['seconds'] for t in timings)
  # A call that only evaluates a finished run gives the rate of all its stretches.
  iterations_timed = sum(t['to_step'] - t['from_step'] for t in timings)

  evaluate, oracles, goals = make_evaluator(config, env, policy)
  start = time.perf_counter()
  maml = np.asarray(evaluate(state.params))
  random_init = np.asarray(evaluate(init_params))
  baselines = {k: summary(np.asarray(v)) for k, v in oracles().items()}
  eval_seconds = time.perf_counter() - start
  results = {
    'run': {**run_info(), **code},
    'config': config.to_dict(),
    'iterations': int(state.step),
    'episodes_trained': int(state.step)
    * config.num_tasks
    * config.num_episodes
    * (config.inner_steps + 1),
    'resumed_from_iteration': start_step,
    'train_seconds_total': round(train_seconds, 1),
    'seconds_per_iteration': (
      stretch / trained
      if trained
      else (train_seconds / iterations_timed if iterations_timed else math.nan)
    ),
    'eval_seconds': round(eval_seconds, 1),
    'eval': {
      'steps': list(range(config.eval.steps + 1)),
      'num_tasks': config.eval.num_tasks,
      'seed': config.eval.seed,
      'maml': summary(maml),
      'random_init': summary(random_init),
      **baselines,
      # Per held-out task, for paired comparisons: its goal and both returns.
      'goals': goals.tolist(),
      'per_task': {'maml': maml.tolist(), 'random_init': random_init.tolist()},
    },
    **code,
  }
  for name in ('maml', 'random_init'):
    logging.info(
      '%s: returns after 0..%d steps %s',
      name,
      config.eval.steps,
      ', '.join(
        f'{m:.2f}+-{c:.2f}'
        for m, c in zip(results['eval'][name]['mean'], results['eval'][name]['ci95'])
      ),
    )
  (workdir / 'results.json').write_text(json.dumps(results, indent=2))
  (workdir / 'results.md').write_text(report.results_table([results]))
  report.plot_returns([results], workdir / 'returns.png')
  logging.info('wrote results to %s', workdir)
  return {'state': state, **results}
