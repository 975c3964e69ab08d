"""Training loop of the RL^2 bandit experiment: checkpoints, logs, evaluation.

One run PPO-trains ``jmeta.rl.rl2``'s GRU policy on trials of ``num_pulls`` pulls
of ``num_arms``-armed Bernoulli bandits (``jmeta.rl.rl2_ppo``, tasks and trials
sampled inside the jitted step), logs to ``metrics.jsonl`` and TensorBoard,
checkpoints so that a stopped run resumes exactly, and ends with the average
total reward of one trial on each held-out bandit in ``results.json`` and
``results.md``.
"""

from __future__ import annotations

import json
import math
import pathlib
import time

import jax
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
from experiments.rl2 import report
from jmeta import rl
from jmeta.rl import rl2
from jmeta.rl.ppo import PPOSettings
from jmeta.validation import check_positive_int

OUTPUTS = ('results.json', 'results.md')

# Changing these does not change the training trajectory.
MAY_DIFFER_ON_RESUME = ('num_iterations', 'log_every', 'checkpoint_every', 'eval.')


def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises ``ValueError`` naming the field for values the factories do not check."""
  for field in (
    'num_arms',
    'num_pulls',
    'hidden_size',
    'num_trials',
    'num_iterations',
    'log_every',
    'checkpoint_every',
  ):
    check_positive_int(config[field], f'config.{field}')
  if config.eval.num_tasks < 2:
    raise ValueError(
      'config.eval.num_tasks must be at least 2 for a standard error, got '
      f'{config.eval.num_tasks}.'
    )


def make_env(config) -> rl.Environment:
  # One pull per episode: a trial is num_pulls episodes (RL^2's n).
  return rl.bernoulli_bandit(config.num_arms, horizon=1)


def eval_tasks(config, env) -> rl.BanditTask:
  """The held-out bandits of ``config.eval.seed`` (the baselines script draws the
  same ones for the same number of arms)."""
  key = jax.random.fold_in(jax.random.key(config.eval.seed), 0)
  return rl.sample_tasks(env, key, config.eval.num_tasks)


def summary(values) -> dict:
  values = np.asarray(values, np.float64)
  return {
    'mean': float(values.mean()),
    'stderr': float(values.std(ddof=1) / math.sqrt(values.size)),
    'num_tasks': int(values.size),
  }


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains RL^2, resuming from ``workdir``'s checkpoints if any, then evaluates;
  returns the results (and the final state)."""
  check_config(config)
  workdir = prepare_workdir(workdir, OUTPUTS)
  env = make_env(config)
  policy = rl2.gru_policy(env, config.hidden_size, config.separate_value)
  with runs.workdir_lock(workdir):
    state, info = train(config, workdir, env, policy)
    return evaluate(config, workdir, env, policy, state, info)


def make_trainer(config, env, policy) -> rl2.RL2Trainer:
  optimizer = optax.chain(
    optax.clip_by_global_norm(config.clip_norm), optax.adam(config.learning_rate)
  )
  return rl2.rl2_ppo(
    env,
    policy,
    optimizer,
    num_trials=config.num_trials,
    num_episodes=config.num_pulls,
    settings=PPOSettings(**config.ppo.to_dict()),
  )


def train(config, workdir: pathlib.Path, env, policy) -> tuple[rl2.RL2State, dict]:
  """``config.num_iterations`` PPO iterations, resumed from the checkpoints."""
  trainer = make_trainer(config, env, policy)
  root = jax.random.key(config.seed)
  fresh = trainer.init(policy.init(jax.random.fold_in(root, 0)))
  checkpointer = Checkpointer(
    workdir, config.to_dict(), may_differ=MAY_DIFFER_ON_RESUME
  )
  state, saved = checkpointer.resume(fresh)
  start_step, total = int(state.step), config.num_iterations
  seconds_before, tb = records.resume_records(workdir, start_step, saved)
  train_key = jax.random.fold_in(root, 1)
  code = logged_git_state()
  if start_step < total:
    compile_start = time.perf_counter()
    jmeta.precompile(trainer.step, state, train_key)
    logging.info('compiled the step in %.1f s', time.perf_counter() - compile_start)
  start = time.perf_counter()
  window = []
  try:
    with (
      JsonlWriter(workdir / 'metrics.jsonl') as writer,
      progress_bar(
        range(start_step, total), initial=start_step, total=total, desc='rl2'
      ) as bar,
    ):
      for step in bar:
        state, metrics = trainer.step(state, jax.random.fold_in(train_key, step))
        window.append(metrics)
        done = step + 1
        if done % config.log_every == 0 or done == total:
          record, window = records.window_means(window), []
          if not np.isfinite(record['loss']):
            raise FloatingPointError(f'the PPO loss became non-finite by {done}.')
          elapsed = seconds_before + time.perf_counter() - start
          record.update(
            step=done,
            trials=done * config.num_trials,
            elapsed_s=round(elapsed, 2),
          )
          writer.write(record)
          records.add_scalars(tb, record)
          bar.set_postfix(trial_return=f'{record["trial_return"]:.2f}')
        if done % config.checkpoint_every == 0 or done == total:
          seconds = time.perf_counter() - start
          segment = {'from_step': start_step, 'seconds': seconds}
          progress = {'step': done, 'train_seconds': seconds_before + seconds}
          checkpointer.save(done, state, {**progress, 'segment': segment, **code})
    jax.block_until_ready(state)
  finally:  # a stopped run still finishes writing its last checkpoint
    tb.close()
    checkpointer.close()
  stretch = time.perf_counter() - start
  trained = int(state.step) - start_step
  train_seconds = records.append_timing(
    workdir / 'timing.jsonl', start_step, int(state.step), stretch, code
  )
  return state, {
    'resumed_from_iteration': start_step,
    'train_seconds_total': round(train_seconds, 1),
    'seconds_per_iteration': (
      stretch / trained if trained else saved.get('seconds_per_iteration', math.nan)
    ),
    'code': code,
  }


def evaluate(config, workdir: pathlib.Path, env, policy, state, info: dict) -> dict:
  """One trial on each held-out bandit; writes ``results.json`` and ``results.md``."""
  start = time.perf_counter()
  play = jax.jit(
    lambda params, tasks, key: rl2.play_trials(
      env, policy, params, tasks, key, config.num_pulls
    ).rewards.sum(axis=-1)
  )
  eval_key = jax.random.fold_in(jax.random.key(config.eval.seed), 1)
  returns = np.asarray(play(state.params, eval_tasks(config, env), eval_key))
  code = info.pop('code')
  results = {
    'run': {**run_info(), **code},
    'config': config.to_dict(),
    'num_arms': config.num_arms,
    'num_pulls': config.num_pulls,
    'iterations': int(state.step),
    'trials_trained': int(state.step) * config.num_trials,
    **info,
    'eval_seconds': round(time.perf_counter() - start, 1),
    'eval': {'seed': config.eval.seed, 'rl2': summary(returns)},
    **code,
  }
  logging.info(
    'RL^2 on %d arms x %d pulls: %.2f +- %.2f',
    config.num_arms,
    config.num_pulls,
    results['eval']['rl2']['mean'],
    results['eval']['rl2']['stderr'],
  )
  (workdir / 'results.json').write_text(json.dumps(results, indent=2))
  (workdir / 'results.md').write_text(report.rl2_runs_table([results]))
  logging.info('wrote results to %s', workdir)
  return {'state': state, **results}
