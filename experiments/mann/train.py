"""Training loop of the MANN one-shot Omniglot experiment: checkpoints, final test.

One run trains one model (``config.model.name``) on episodes sampled on device inside
the jitted update, logs to ``metrics.jsonl``, checkpoints so that a stopped run
resumes exactly, and ends with the accuracy by instance on fixed test episodes in
``results.json``, ``results.md`` and ``accuracy_by_instance.png``.
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
from experiments.mann import report
from experiments.mann.episodes import (
  SequenceSampler,
  accuracy_by_instance,
  label_loss,
  make_sequence_sampler,
  model_inputs,
  predicted_labels,
  step_strings,
)
from jmeta.data import episodes, omniglot

OUTPUTS = ('results.json', 'results.md', 'accuracy_by_instance.png')
MODELS = {'mann': jmeta.memory.mann, 'lstm': jmeta.memory.lstm, 'ntm': jmeta.memory.ntm}
OPTIMIZERS = ('adam', 'rmsprop')
LABELS = ('one_hot', 'string')
# Changing these does not change the training trajectory, so a resumed run may differ
# in them from the run that wrote the checkpoints.
MAY_DIFFER_ON_RESUME = ('train_episodes', 'log_every', 'checkpoint_every', 'eval.')
# Config fields added since runs were checkpointed, at the value those runs had.
ADDED_FIELDS = {'data.labels': 'one_hot'}


class TrainState(NamedTuple):
  """Everything a resumed run needs; the update's episodes come from ``step``."""

  step: jax.Array
  params: Any
  opt_state: Any


def num_updates(config: ml_collections.ConfigDict) -> int:
  """``config.train_episodes`` in updates of ``config.batch_size`` episodes (rounded up)."""
  return math.ceil(config.train_episodes / config.batch_size)


def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises ``ValueError`` naming the field for values the types cannot catch."""
  if config.model.name not in MODELS:
    raise ValueError(
      f'config.model.name = {config.model.name!r} is not one of {tuple(MODELS)}.'
    )
  if config.data.labels not in LABELS:
    raise ValueError(
      f'config.data.labels = {config.data.labels!r} is not one of {LABELS}.'
    )
  if config.optimizer.name not in OPTIMIZERS:
    raise ValueError(
      f'config.optimizer.name = {config.optimizer.name!r} is not one of {OPTIMIZERS}.'
    )
  splits = (*config.data.train_splits, config.data.test_split)
  unknown = [s for s in splits if s not in omniglot.SPLITS]
  if unknown:
    raise ValueError(
      f'config.data.train_splits / test_split name {unknown}, not splits of '
      f'Omniglot {omniglot.SPLITS}.'
    )
  if config.data.test_split in config.data.train_splits:
    raise ValueError(
      f'config.data.test_split = {config.data.test_split!r} is also a training split '
      f'({tuple(config.data.train_splits)}); test on held-out characters.'
    )
  for field in ('batch_size', 'train_episodes', 'log_every', 'checkpoint_every'):
    if config[field] < 1:
      raise ValueError(f'config.{field} must be >= 1, got {config[field]}.')
  for field in ('num_episodes', 'episodes_per_call'):
    if config.eval[field] < 1:
      raise ValueError(f'config.eval.{field} must be >= 1, got {config.eval[field]}.')
  if config.eval.num_episodes < 2:
    raise ValueError(
      'config.eval.num_episodes must be >= 2 for a confidence interval, got '
      f'{config.eval.num_episodes}.'
    )


def make_model(config: ml_collections.ConfigDict) -> jmeta.memory.MemoryModel:
  """``jmeta.memory.<config.model.name>(label features, **other model fields)``:
  ``num_classes`` outputs for one-hot labels, a softmax of 5 per character of a
  string label."""
  factory = MODELS[config.model.name]
  fields = {k: v for k, v in config.model.items() if k != 'name'}
  allowed = set(inspect.signature(factory).parameters) - {'output_size'}
  unknown = sorted(set(fields) - allowed)
  if unknown:
    raise ValueError(
      f'config.model has fields {unknown} that jmeta.memory.{config.model.name} '
      f'does not take; it takes {sorted(allowed)}.'
    )
  return factory(make_sampler(config).label_features, **fields)


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  opt = config.optimizer
  if opt.name == 'adam':
    step = optax.adam(opt.learning_rate)
  else:
    step = optax.rmsprop(
      opt.learning_rate, decay=opt.rmsprop_decay, momentum=opt.momentum
    )
  if opt.clip_norm > 0:
    return optax.chain(optax.clip_by_global_norm(opt.clip_norm), step)
  return step


def make_sampler(config: ml_collections.ConfigDict) -> SequenceSampler:
  data = config.data
  return make_sequence_sampler(
    data.num_classes,
    data.instances,
    data.image_size,
    max_shift=data.max_shift,
    rotate=data.rotate,
    string_labels=data.labels == 'string',
  )


def load_banks(config: ml_collections.ConfigDict) -> dict[str, jax.Array]:
  """Device-resident uint8 banks ``{'train': ..., 'test': ...}`` (28 x 28 images);
  ``train`` joins ``config.data.train_splits``. Raises ``ValueError`` if a bank has
  fewer characters than ``config.data.num_classes``."""
  protocol = config.data.protocol
  train = np.concatenate(
    [omniglot.load_split(protocol, s) for s in config.data.train_splits]
  )
  test = omniglot.load_split(protocol, config.data.test_split)
  for name, bank in (('training', train), ('test', test)):
    if config.data.num_classes > len(bank):
      raise ValueError(
        f'config.data.num_classes = {config.data.num_classes} exceeds the '
        f'{len(bank)} characters of the {name} split(s) of the {protocol!r} protocol.'
      )
  return {'train': jnp.asarray(train), 'test': jnp.asarray(test)}


def episode_loss(model, params, inputs: jax.Array, targets: jax.Array):
  """Mean over every step of every episode of the label's cross-entropy (summed
  over a string label's characters), and the logits."""
  logits = jax.vmap(model.apply, (None, 0))(params, inputs)
  return label_loss(logits, targets).mean(), logits


def make_train_step(config, model, optimizer, sampler: SequenceSampler):
  """The jitted update ``step(state, key, bank) -> (state, metrics)``: it samples
  ``config.batch_size`` episodes from ``bank`` with ``key``."""
  n, instances = sampler.num_classes, sampler.instances

  @jax.jit
  def step(state: TrainState, key: jax.Array, bank: jax.Array):
    batch = sampler.sample_from(bank, key, config.batch_size)
    inputs = model_inputs(batch, sampler.alphabet)
    (loss, logits), grads = jax.value_and_grad(
      lambda p: episode_loss(model, p, inputs, step_strings(batch)), has_aux=True
    )(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    predictions = predicted_labels(logits, batch.strings)
    by_instance = accuracy_by_instance(predictions, batch.labels, n, instances)
    metrics = {
      'loss': loss,
      'accuracy': jnp.mean(predictions == batch.labels),
      'accuracy_by_instance': jnp.nanmean(by_instance, axis=0),
    }
    return TrainState(state.step + 1, params, opt_state), metrics

  return step


def make_evaluator(config, model, sampler: SequenceSampler):
  """``evaluate(params, bank, num_episodes, seed) -> (episodes, instances)`` accuracies
  by instance on the fixed episodes of ``episodes.evaluation_keys(seed, ...)``."""
  n, instances = sampler.num_classes, sampler.instances

  @jax.jit
  def evaluate_chunk(params, keys, bank):
    batch = jax.vmap(
      lambda k: jax.tree.map(lambda x: x[0], sampler.sample_from(bank, k, 1))
    )(keys)
    inputs = model_inputs(batch, sampler.alphabet)
    logits = jax.vmap(model.apply, (None, 0))(params, inputs)
    predictions = predicted_labels(logits, batch.strings)
    return accuracy_by_instance(predictions, batch.labels, n, instances)

  def evaluate(params, bank, num_episodes: int, seed: int) -> np.ndarray:
    keys = episodes.evaluation_keys(seed, num_episodes)
    per_call = config.eval.episodes_per_call
    out = []
    with progress_bar(total=num_episodes, desc='test', unit='episode') as bar:
      for i in range(0, num_episodes, per_call):
        out.append(np.asarray(evaluate_chunk(params, keys[i : i + per_call], bank)))
        bar.update(len(out[-1]))
    return np.concatenate(out)

  return evaluate


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains ``config.model`` on one-shot Omniglot, resuming from ``workdir``'s
  checkpoints if any, then tests it; returns the results (and the final state)."""
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
  banks = load_banks(config)
  sampler = make_sampler(config)
  model = make_model(config)
  optimizer = make_optimizer(config)
  root = jax.random.key(config.seed)
  example = jnp.zeros(
    (sampler.steps, config.data.image_size**2 + sampler.label_features)
  )
  params = model.init(jax.random.fold_in(root, 0), example)
  state = TrainState(jnp.zeros((), jnp.int32), params, optimizer.init(params))
  state, saved = checkpointer.resume(state)
  start_step, total = int(state.step), num_updates(config)
  # The updates after the checkpoint are trained again: their records go.
  records.cut_jsonl(workdir / 'metrics.jsonl', start_step)
  seconds_before = saved.get('train_seconds', 0.0)

  step_fn = make_train_step(config, model, optimizer, sampler)
  train_key = jax.random.fold_in(root, 1)
  code = logged_git_state()
  start = time.perf_counter()
  if start_step < total:
    jmeta.precompile(step_fn, state, train_key, banks['train'])
    logging.info('compiled the update in %.1f s', time.perf_counter() - start)
  start = time.perf_counter()
  window, window_steps = None, 0
  with (
    JsonlWriter(workdir / 'metrics.jsonl') as writer,
    progress_bar(
      range(start_step, total),
      initial=start_step,
      total=total,
      desc=config.model.name,
      unit='update',
    ) as bar,
  ):
    for step in bar:
      state, metrics = step_fn(
        state, jax.random.fold_in(train_key, step), banks['train']
      )
      window = metrics if window is None else jax.tree.map(jnp.add, window, metrics)
      window_steps += 1
      done = step + 1
      if done % config.log_every == 0 or done == total:
        record = _record(window, window_steps)
        window, window_steps = None, 0
        elapsed = seconds_before + time.perf_counter() - start
        record.update(
          step=done, episodes=done * config.batch_size, elapsed_s=round(elapsed, 2)
        )
        writer.write(record)
        bar.set_postfix(loss=f'{record["train_loss"]:.3f}')
        logging.info(
          'update %d: loss %.4f, accuracy at instances 1/2/10 %.3f/%.3f/%.3f',
          done,
          record['train_loss'],
          record['train_accuracy_1'],
          record['train_accuracy_2'],
          record[f'train_accuracy_{config.data.instances}'],
        )
        if not np.isfinite(record['train_loss']):
          raise FloatingPointError(
            f'the training loss became non-finite by update {done} (the mean over '
            f'the {config.log_every} updates before it); lower '
            '--config.optimizer.learning_rate or set --config.optimizer.clip_norm.'
          )
      if done % config.checkpoint_every == 0 or done == total:
        seconds = seconds_before + time.perf_counter() - start
        progress = {
          'step': done,
          'num_iterations': total,  # for experiments.runs status
          'train_seconds': seconds,
          'seconds_per_update': (time.perf_counter() - start) / (done - start_step),
        }
        checkpointer.save(done, state, progress)
  checkpointer.close()
  jax.block_until_ready(state)
  stretch = time.perf_counter() - start
  trained = int(state.step) - start_step

  evaluate = make_evaluator(config, model, sampler)
  accuracy = evaluate(
    state.params, banks['test'], config.eval.num_episodes, config.eval.seed
  )
  mean, ci = jmeta.mean_confidence_interval(accuracy)
  results = {
    # The commit this process started from, not the one checked out when it ends.
    'run': {**run_info(), **code},
    'config': config.to_dict(),
    'model': config.model.name,
    'updates': int(state.step),
    'episodes_trained': int(state.step) * config.batch_size,
    'resumed_from_update': start_step,
    'train_seconds_total': round(seconds_before + stretch, 1),
    # Of this stretch of training, compilation excluded.
    'seconds_per_update': (
      stretch / trained if trained else saved.get('seconds_per_update', math.nan)
    ),
    'test': {
      'episodes': config.eval.num_episodes,
      'seed': config.eval.seed,
      'num_classes': config.data.num_classes,
      'characters': int(banks['test'].shape[0]),
      'accuracy': mean.tolist(),
      'ci95': ci.tolist(),
    },
    'paper': _paper(config),
    **code,
  }
  logging.info(
    'test accuracy at instances %s: %s',
    list(report.TABLE_INSTANCES),
    [f'{mean[k - 1]:.3f}+-{ci[k - 1]:.3f}' for k in report.TABLE_INSTANCES],
  )
  (workdir / 'results.json').write_text(json.dumps(results, indent=2))
  (workdir / 'results.md').write_text(report.results_table([results]))
  report.plot_accuracy_by_instance([results], workdir / 'accuracy_by_instance.png')
  logging.info('wrote results to %s', workdir)
  return {'state': state, **results}


def _paper(config: ml_collections.ConfigDict) -> dict:
  """The paper's row for this run, ``{'source', 'accuracy'}`` (accuracy by
  presentation), or {} where the paper has none."""
  row = report.paper_row(config.model.name, config.data.num_classes, config.data.labels)
  if row is None:
    return {}
  return {'source': row[0], 'accuracy': dict(zip(report.TABLE_INSTANCES, row[1]))}


def _record(window: dict, steps: int) -> dict:
  """The summed metrics of ``steps`` updates as their means, one field per instance."""
  window = jax.device_get(window)
  record = {
    'train_loss': float(window['loss']) / steps,
    'train_accuracy': float(window['accuracy']) / steps,
  }
  for k, value in enumerate(window['accuracy_by_instance'], 1):
    record[f'train_accuracy_{k}'] = float(value) / steps
  return record
