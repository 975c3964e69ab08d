"""Meta-training and evaluation loop of the learned-optimizer experiment.

One run meta-trains ``config.rule`` on unrolls of ``config.steps`` steps of
``config.task`` problems (``'quadratic'``: random quadratics; ``'mnist'``: an MLP
on minibatches of MNIST images) with ``config.estimator``, logs to
``metrics.jsonl`` and TensorBoard, checkpoints so that a stopped run resumes
exactly, then tunes each optax baseline's learning rate on the training
distribution and compares all of them on held-out problems: ``results.json``,
``results.md`` and ``loss_curves.png``, with the trained rule's meta-parameters in
``rule.msgpack`` (``load_rule`` reads them back). On MNIST the test also reports, after the
last step, the loss on all the optimizee-training images and on the held-out images
(``jmeta.data.optimizee_split``); ``config.eval`` may change the evaluated problem
(more steps, other hidden layers or activation: the paper's generalisation tests).
"""

from __future__ import annotations

import json
import math
import pathlib
import textwrap
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

import jmeta
from experiments.common import records
from experiments.common.checkpoint import (
  Checkpointer,
  finished_params_file,
  read_params,
  write_params,
)
from experiments.common.progress import progress_bar
from experiments.common.run_info import hardware_label, logged_git_state, run_info
from experiments.common.workdir import JsonlWriter, prepare_workdir
from jmeta import learned_optimizers as lopt
from jmeta.validation import check_positive_int, check_steps

RULE_FILE = 'rule.msgpack'
OUTPUTS = ('results.json', 'results.md', 'loss_curves.png', RULE_FILE)
RULES = {'lstm': lopt.lstm_rule, 'mlp': lopt.mlp_rule}
ESTIMATORS = ('full_backprop', 'truncated_backprop', 'antithetic_es', 'pes')
TASKS = ('quadratic', 'mnist')
BASELINES = {
  'sgd': lambda lr: optax.sgd(lr),
  'momentum': lambda lr: optax.sgd(lr, momentum=0.9),
  'nag': lambda lr: optax.sgd(lr, momentum=0.9, nesterov=True),
  'rmsprop': lambda lr: optax.rmsprop(lr),
  'adam': lambda lr: optax.adam(lr),
}
LABELS = {
  'learned': 'LSTM optimizer (learned)',
  'sgd': 'SGD',
  'momentum': 'momentum 0.9',
  'nag': 'NAG 0.9',
  'rmsprop': 'RMSprop',
  'adam': 'Adam',
}
# Changing these does not change the meta-training trajectory.
MAY_DIFFER_ON_RESUME = (
  'log_every',
  'checkpoint_every',
  'tune.',
  'eval.',
)


def check_config(config: ml_collections.ConfigDict) -> None:
  if config.task not in TASKS:
    raise ValueError(f'config.task must be one of {TASKS}, got {config.task!r}.')
  if config.task == 'mnist' and 'mnist' not in config:
    raise ValueError(
      "config.task is 'mnist' but the config has no config.mnist block; start from "
      'experiments/learned_optimizer/configs/mnist.py.'
    )
  if config.rule not in RULES:
    raise ValueError(
      f'config.rule must be one of {sorted(RULES)}, got {config.rule!r}.'
    )
  if config.estimator not in ESTIMATORS:
    raise ValueError(
      f'config.estimator must be one of {ESTIMATORS}, got {config.estimator!r}.'
    )
  for field in (
    'dim',
    'steps',
    'num_tasks',
    'num_updates',
    'log_every',
    'checkpoint_every',
  ):
    check_positive_int(config[field], f'config.{field}')
  truncated = config.estimator in ('truncated_backprop', 'pes')
  lopt.check_unroll(config.steps, config.truncation if truncated else None)
  unknown = set(config.tune.baselines) - set(BASELINES)
  if unknown:
    raise ValueError(
      f'config.tune.baselines has unknown optimizers {sorted(unknown)}; known: '
      f'{sorted(BASELINES)}.'
    )
  if not config.tune.learning_rates:
    raise ValueError('config.tune.learning_rates is empty; give the grid to search.')
  check_steps(config.eval.get('steps', 0), 'config.eval.steps')
  if config.eval.num_tasks < 2:
    raise ValueError(
      f'config.eval.num_tasks must be at least 2 for a confidence interval, got '
      f'{config.eval.num_tasks}.'
    )


class Problems(NamedTuple):
  """The problems of a run: ``train`` (meta-training), ``test`` (tuning and the
  held-out comparison; ``train`` unless ``config.eval`` changes it), ``steps`` of
  the test unrolls, and ``final_losses(states) -> {name: per-problem loss}``
  measured after the test unroll (empty for quadratics)."""

  train: lopt.TaskFamily
  test: lopt.TaskFamily
  steps: int
  final_losses: Callable[[lopt.InnerState], dict]


def mnist_families(config) -> tuple[lopt.TaskFamily, lopt.TaskFamily, lopt.TaskFamily]:
  """MLPs on the optimizee-training images: as meta-trained, as evaluated
  (``config.eval``'s overrides), and the evaluated net on the held-out images."""
  from jmeta.data import optimizee_split

  source = {
    'idx_dir': config.mnist.idx_dir or None,
    'data_dir': config.mnist.data_dir or None,
  }
  train, heldout = (optimizee_split(part, **source) for part in ('train', 'heldout'))

  def family(data, hidden_sizes, activation):
    return lopt.mlp_classifiers(
      data.images,
      data.labels,
      hidden_sizes=hidden_sizes,
      activation=activation,
      batch_size=config.mnist.batch_size,
    )

  hidden, activation = tuple(config.mnist.hidden_sizes), config.mnist.activation
  eval_hidden = tuple(config.eval.get('hidden_sizes', ())) or hidden
  eval_activation = config.eval.get('activation', '') or activation
  return (
    family(train, hidden, activation),
    family(train, eval_hidden, eval_activation),
    family(heldout, eval_hidden, eval_activation),
  )


def make_problems(config) -> Problems:
  steps = config.eval.get('steps', 0) or config.steps
  if config.task == 'quadratic':
    family = lopt.quadratics(config.dim)
    return Problems(family, family, steps, lambda states: {})
  train, test, heldout = mnist_families(config)

  def final_losses(states):
    losses = lambda f: jax.vmap(f.loss)(states.task, states.params)  # noqa: E731
    return {'train_loss': losses(test), 'heldout_loss': losses(heldout)}

  return Problems(train, test, steps, final_losses)


def make_estimator(config, rule, family) -> lopt.UnrollEstimator:
  common = {'steps': config.steps, 'num_tasks': config.num_tasks}
  if config.estimator == 'full_backprop':
    return lopt.full_backprop(rule, family, first_order=config.first_order, **common)
  if config.estimator == 'truncated_backprop':
    return lopt.truncated_backprop(
      rule,
      family,
      truncation=config.truncation,
      first_order=config.first_order,
      **common,
    )
  if config.estimator == 'antithetic_es':
    return lopt.antithetic_es(rule, family, std=config.std, **common)
  return lopt.pes(rule, family, truncation=config.truncation, std=config.std, **common)


def make_meta_optimizer(config) -> optax.GradientTransformation:
  """Adam with a cosine decay of its rate to a tenth over the run, after clipping
  the meta-gradient's global norm."""
  schedule = optax.cosine_decay_schedule(
    config.meta_learning_rate, config.num_updates, alpha=0.1
  )
  return optax.chain(optax.clip_by_global_norm(config.clip_norm), optax.adam(schedule))


def meta_train(
  config, workdir: pathlib.Path, rule, family
) -> tuple[lopt.MetaTrainState, dict]:
  """``config.num_updates`` meta-steps, resumed from the workdir's checkpoints."""
  checkpointer = Checkpointer(
    workdir, config.to_dict(), may_differ=MAY_DIFFER_ON_RESUME
  )
  estimator = make_estimator(config, rule, family)
  optimizer = make_meta_optimizer(config)
  root = jax.random.key(config.seed)
  state = lopt.init_meta_train_state(
    estimator,
    optimizer,
    rule.meta_init(jax.random.fold_in(root, 0)),
    jax.random.fold_in(root, 1),
  )
  state, saved = checkpointer.resume(state)
  start_step, total = int(state.step), config.num_updates
  kept = records.cut_jsonl(workdir / 'metrics.jsonl', start_step)
  records.cut_timing(workdir / 'timing.jsonl', start_step, saved)
  seconds_before = saved.get('train_seconds', 0.0)
  step_fn = jax.jit(lopt.meta_train_step(estimator, optimizer))
  train_key = jax.random.fold_in(root, 2)
  code = logged_git_state()
  compile_start = time.perf_counter()
  if start_step < total:
    jmeta.precompile(step_fn, state, train_key)
  compile_seconds = time.perf_counter() - compile_start
  start = time.perf_counter()
  window = []
  tb = records.tensorboard_writer(workdir / 'tensorboard', kept)
  try:
    with (
      JsonlWriter(workdir / 'metrics.jsonl') as writer,
      progress_bar(
        range(start_step, total),
        initial=start_step,
        total=total,
        desc=config.rule,
        unit='meta-step',
      ) as bar,
    ):
      for step in bar:
        state, metrics = step_fn(state, jax.random.fold_in(train_key, step))
        window.append(metrics)
        done = step + 1
        if done % config.log_every == 0 or done == total:
          window = jax.device_get(window)
          record = {k: float(np.mean([m[k] for m in window])) for k in window[0]}
          window = []
          if not np.isfinite(record['loss']):
            raise FloatingPointError(
              f'the meta-loss became non-finite by meta-step {done}; lower '
              '--config.meta_learning_rate or --config.clip_norm.'
            )
          record.update(
            step=done, elapsed_s=round(seconds_before + time.perf_counter() - start, 2)
          )
          writer.write(record)
          records.add_scalars(tb, record)
          bar.set_postfix(loss=f'{record["loss"]:.3f}')
        if done % config.checkpoint_every == 0 or done == total:
          seconds = seconds_before + time.perf_counter() - start
          progress = {
            'step': done,
            # For experiments.runs' status of a registered run.
            'num_iterations': total,
            'train_seconds': seconds,
            'segment': {
              'from_step': start_step,
              'seconds': time.perf_counter() - start,
            },
            **code,
          }
          checkpointer.save(done, state, progress)
    jax.block_until_ready(state)
  finally:  # a stopped run still finishes writing its last checkpoint
    tb.close()
    checkpointer.close()
  stretch = time.perf_counter() - start
  if total > start_step:
    with JsonlWriter(workdir / 'timing.jsonl') as timing:
      timing.write(
        {
          'from_step': start_step,
          'to_step': total,
          'seconds': round(stretch, 1),
          **code,
        }
      )
  trained = total - start_step
  info = {
    'meta_steps': total,
    'resumed_from': start_step,
    'seconds': round(seconds_before + stretch, 1),
    'compile_seconds': round(compile_seconds, 1),
    'seconds_per_meta_step': round(stretch / trained, 4) if trained else math.nan,
    **code,
  }
  return state, info


def unrolls_fn(problems: Problems, key, num_tasks, final_losses=False):
  """``f(name, optimizer_factory, lr) -> (curves, final losses)`` on the test
  problems, one compile per optimizer kind (the rate is traced); the final losses
  are ``problems.final_losses`` when ``final_losses``, else empty."""
  cache = {}

  def run(optimizer):
    states, curves = lopt.final_states_and_curves(
      optimizer, problems.test, key, steps=problems.steps, num_tasks=num_tasks
    )
    return curves, problems.final_losses(states) if final_losses else {}

  def unrolls(name, make, lr):
    if name not in cache:
      cache[name] = jax.jit(lambda rate: run(make(rate)))
    out = cache[name](jnp.asarray(lr, jnp.float32))
    return jax.tree.map(lambda x: np.asarray(x, np.float64), out)

  unrolls.run = run
  return unrolls


def tune_baselines(config, problems: Problems) -> dict:
  """For each baseline, the mean final loss at every rate of the grid on the
  training distribution, and the best rate (non-finite losses never win)."""
  unrolls = unrolls_fn(
    problems, jax.random.key(config.tune.seed), config.tune.num_tasks
  )
  out = {}
  for name in config.tune.baselines:
    finals = [
      float(np.mean(unrolls(name, BASELINES[name], lr)[0][:, -1]))
      for lr in config.tune.learning_rates
    ]
    scores = [f if np.isfinite(f) else math.inf for f in finals]
    best = int(np.argmin(scores))
    if not np.isfinite(scores[best]):
      raise FloatingPointError(
        f'{name} diverged at every rate of config.tune.learning_rates.'
      )
    out[name] = {
      'learning_rates': list(config.tune.learning_rates),
      'mean_final_loss': [f if np.isfinite(f) else None for f in finals],
      'best_learning_rate': config.tune.learning_rates[best],
    }
    logging.info(
      '%s: best rate %.3g, mean final loss %.4g',
      name,
      config.tune.learning_rates[best],
      scores[best],
    )
  return out


def summarize(curves: np.ndarray, final_losses: dict) -> dict:
  final = curves[:, -1]
  mean, ci = jmeta.mean_confidence_interval(final)
  # The meta-objective: the mean of f(theta_t) over the steps t = 1..N.
  unroll_mean, unroll_ci = jmeta.mean_confidence_interval(curves[:, 1:].mean(1))
  return {
    'final_loss_mean': float(mean),
    'final_loss_ci95': float(ci),
    'final_loss_median': float(np.median(final)),
    'unroll_loss_mean': float(unroll_mean),
    'unroll_loss_ci95': float(unroll_ci),
    'mean_curve': curves.mean(0).tolist(),
    **{
      f'{name}_{stat}': float(value)
      for name, losses in final_losses.items()
      for stat, value in zip(('mean', 'ci95'), jmeta.mean_confidence_interval(losses))
    },
  }


def evaluate(config, problems: Problems, rule, meta_params, tuned: dict) -> dict:
  """Loss curves (and final losses) of the learned rule and of each tuned baseline
  on the same ``config.eval.num_tasks`` held-out problems."""
  key = jax.random.key(config.eval.seed)
  unrolls = unrolls_fn(problems, key, config.eval.num_tasks, final_losses=True)
  learned = jax.jit(lambda mp: unrolls.run(lopt.as_optimizer(rule, mp)))(meta_params)
  out = {
    'learned': summarize(*jax.tree.map(lambda x: np.asarray(x, np.float64), learned))
  }
  for name, t in tuned.items():
    lr = t['best_learning_rate']
    out[name] = {
      'learning_rate': lr,
      **summarize(*unrolls(name, BASELINES[name], lr)),
    }
  for name, r in out.items():
    logging.info(
      '%s: final loss %.4f +- %.4f', name, r['final_loss_mean'], r['final_loss_ci95']
    )
  return out


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Meta-trains, tunes the baselines, tests; writes results and a plot."""
  check_config(config)
  workdir = prepare_workdir(workdir, OUTPUTS)
  rule, problems = RULES[config.rule](), make_problems(config)
  info = run_info()
  state, train_info = meta_train(config, workdir, rule, problems.train)
  tuned = tune_baselines(config, problems)
  test = evaluate(config, problems, rule, state.meta_params, tuned)
  results = {
    'run': {**info, **{k: train_info[k] for k in ('git_commit', 'git_dirty')}},
    'config': config.to_dict(),
    'problems': {
      'train': problems.train.name,
      'test': problems.test.name,
      'test_steps': problems.steps,
    },
    'meta_parameters': sum(int(np.size(x)) for x in jax.tree.leaves(state.meta_params)),
    # The meta-steps trained: what experiments.runs reads to call a run finished.
    'updates': int(state.step),
    'train': {
      k: v for k, v in train_info.items() if k not in ('git_commit', 'git_dirty')
    },
    'tuning': tuned,
    'test': test,
  }
  (workdir / 'results.json').write_text(json.dumps(results, indent=2))
  write_params(workdir / RULE_FILE, state.meta_params)
  from experiments.learned_optimizer import report

  (workdir / 'results.md').write_text(report.results_table(results))
  plot(results, workdir / 'loss_curves.png')
  logging.info('wrote results to %s', workdir)
  return {'state': state, **results}


def load_rule(workdir: str | pathlib.Path) -> tuple[lopt.LearnedRule, dict, Any]:
  """``(rule, config, meta_params)`` of a finished run: its rule (rebuilt from
  ``config.json``), its config as a dict, and the trained meta-parameters that
  ``rule.msgpack`` holds. ``lopt.as_optimizer(rule, meta_params)`` is then an optax
  optimizer."""
  workdir = pathlib.Path(workdir)
  path = finished_params_file(workdir / RULE_FILE, 'learned-optimizer')
  # Runs from before config.task existed trained on quadratics.
  config = {'task': 'quadratic', **json.loads((workdir / 'config.json').read_text())}
  rule = RULES[config['rule']]()
  template = rule.meta_init(jax.random.key(0))
  return rule, config, read_params(path, template)


def problem_label(results: dict) -> str:
  """What the test problems were, in words."""
  config = results['config']
  if config.get('task', 'quadratic') == 'quadratic':
    return f'{config["dim"]}-d quadratics'
  return (
    f'MNIST {results["problems"]["test"]} MLPs (batch {config["mnist"]["batch_size"]}'
    ', images: a split of the MNIST test partition)'
  )


def plot(results: dict, path: str | pathlib.Path) -> None:
  """Mean loss over the held-out problems against the inner step, log scale (the
  shape of Andrychowicz et al.'s Figure 2, left)."""
  from matplotlib.figure import Figure

  fig = Figure(figsize=(5.5, 3.8))
  ax = fig.subplots()
  for name, r in results['test'].items():
    label = LABELS.get(name, name)
    if 'learning_rate' in r:
      label += f' (lr {r["learning_rate"]:.3g})'
    ax.plot(r['mean_curve'], label=label, lw=2 if name == 'learned' else 1)
  config = results['config']
  ax.set(
    yscale='log',
    xlabel='inner step',
    ylabel='mean loss' + (' (minibatch)' if config.get('task') == 'mnist' else ''),
    title=textwrap.fill(
      f'{problem_label(results)}, {config["eval"]["num_tasks"]:,} held-out '
      f'problems ({hardware_label(results["run"])})',
      width=80,
    ),
  )
  ax.title.set_fontsize(7)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
