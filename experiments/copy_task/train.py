"""Training and evaluation loop for the copy task."""

from __future__ import annotations

import json
import pathlib
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

import jmeta
from experiments.common.checkpoint import (
  finished_params_file,
  read_params,
  write_params,
)
from experiments.common.progress import progress_bar
from experiments.common.run_info import hardware_label, logged_git_state, run_info
from experiments.common.workdir import JsonlWriter, prepare_workdir
from experiments.copy_task import sequences
from jmeta.validation import check_positive_int

PARAMS_FILE = 'params.msgpack'
OUTPUTS = (
  'config.json',
  'metrics.jsonl',
  'results.json',
  'cost_vs_length.png',
  PARAMS_FILE,
)
MODELS = ('ntm', 'lstm')
LABELS = {'ntm': 'NTM (LSTM controller)', 'lstm': 'LSTM'}


def label(results: dict) -> str:
  name = results['config']['model']
  return (
    f'{LABELS.get(name, name)}, {results["parameters"]:,} params, trained on '
    f'{results["train"]["sequences"]:,} sequences'
  )


def check_config(config: ml_collections.ConfigDict) -> None:
  if config.model not in MODELS:
    raise ValueError(f'config.model must be one of {MODELS}, got {config.model!r}.')
  if config.model not in config:
    raise ValueError(
      f'config has no settings block for {config.model!r}; add e.g. '
      f'config.{config.model} = ml_collections.ConfigDict(...).'
    )
  sequences.check_lengths(config.min_length, config.max_length)
  for field in ('bits', 'batch_size', 'num_updates', 'log_every'):
    check_positive_int(config[field], f'config.{field}')
  if not config.eval.lengths:
    raise ValueError('config.eval.lengths is empty; give the lengths to evaluate.')
  for length in config.eval.lengths:
    check_positive_int(length, 'each of config.eval.lengths')
  if config.eval.num_sequences < 2:
    raise ValueError(
      'config.eval.num_sequences must be at least 2 for a confidence interval, '
      f'got {config.eval.num_sequences}.'
    )


def make_model(config: ml_collections.ConfigDict) -> jmeta.memory.MemoryModel:
  """The model of ``config.model`` with ``config.bits`` outputs (logits)."""
  factory = {'ntm': jmeta.memory.ntm, 'lstm': jmeta.memory.lstm}[config.model]
  return factory(config.bits, **config[config.model].to_dict())


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Every gradient component clipped to +-clip_value, then RMSProp."""
  return optax.chain(
    optax.clip(config.clip_value),
    optax.rmsprop(config.learning_rate, **config.rmsprop.to_dict()),
  )


def batch_costs(model, params, batch: sequences.CopyBatch) -> dict:
  """Cost in bits and wrong bits of each sequence of ``batch``."""
  logits = jax.vmap(model.apply, (None, 0))(params, batch.inputs)
  return {
    'cost_bits': sequences.cost_in_bits(logits, batch.targets, batch.mask),
    'bit_errors': sequences.bit_errors(logits, batch.targets, batch.mask),
  }


def make_train_step(model, optimizer, config: ml_collections.ConfigDict):
  """``train_step(params, opt_state, key) -> (params, opt_state, metrics)``,
  jitted: it draws a batch from ``key``, then takes one optimizer step on the mean
  cost per sequence."""

  def loss(params, batch):
    costs = batch_costs(model, params, batch)
    return jnp.mean(costs['cost_bits']), costs

  @jax.jit
  def train_step(params, opt_state, key):
    batch = sequences.sample_batch(
      key, config.batch_size, config.min_length, config.max_length, config.bits
    )
    (value, costs), grads = jax.value_and_grad(loss, has_aux=True)(params, batch)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    metrics = {
      'cost_bits': value,
      'bit_errors': jnp.mean(costs['bit_errors']),
      'grad_norm': optax.tree.norm(grads),
    }
    return params, opt_state, metrics

  return train_step


def evaluation_batch(config: ml_collections.ConfigDict, length: int):
  """``config.eval.num_sequences`` sequences of ``length`` vectors, the same for
  every run with this ``config.eval.seed``, padded to the longest evaluated
  length (so that one compiled function evaluates them all)."""
  key = jax.random.fold_in(jax.random.key(config.eval.seed), length)
  batch = sequences.sample_batch(
    key, config.eval.num_sequences, length, length, config.bits
  )
  return sequences.pad_batch(batch, max(config.eval.lengths))


def evaluate(config: ml_collections.ConfigDict, model, params) -> dict:
  """Mean and 95% interval of the cost per sequence (bits) and of the wrong bits
  per sequence, for each of ``config.eval.lengths``."""
  costs = jax.jit(batch_costs, static_argnums=0)
  out = {'lengths': list(config.eval.lengths)}
  for name in ('cost_bits', 'bit_errors'):
    out[f'{name}_mean'], out[f'{name}_ci95'] = [], []
  for length in config.eval.lengths:
    values = costs(model, params, evaluation_batch(config, length))
    for name, value in values.items():
      mean, ci = jmeta.mean_confidence_interval(np.asarray(value))
      out[f'{name}_mean'].append(float(mean))
      out[f'{name}_ci95'].append(float(ci))
    logging.info(
      'length %d: %.2f bits per sequence, %.2f wrong bits',
      length,
      out['cost_bits_mean'][-1],
      out['bit_errors_mean'][-1],
    )
  return out


def train(config, model, params, writer: JsonlWriter):
  """``config.num_updates`` RMSProp steps; returns the params and the seconds."""
  optimizer = make_optimizer(config)
  train_step = make_train_step(model, optimizer, config)
  opt_state = optimizer.init(params)
  train_key = jax.random.fold_in(jax.random.key(config.seed), 1)
  window = []
  start = time.perf_counter()
  with progress_bar(total=config.num_updates, desc=config.model, unit='update') as bar:
    for step in range(config.num_updates):
      params, opt_state, metrics = train_step(
        params, opt_state, jax.random.fold_in(train_key, step)
      )
      window.append(metrics)
      bar.update()
      if (step + 1) % config.log_every == 0 or step + 1 == config.num_updates:
        record = {k: float(np.mean([m[k] for m in window])) for k in window[0]}
        window = []
        if not np.isfinite(record['cost_bits']):
          raise FloatingPointError(
            f'the training cost became non-finite by update {step + 1}; lower '
            'config.learning_rate or config.clip_value.'
          )
        record.update(
          step=step + 1,
          sequences=(step + 1) * config.batch_size,
          elapsed_s=round(time.perf_counter() - start, 3),
        )
        writer.write(record)
        bar.set_postfix(bits=f'{record["cost_bits"]:.2f}')
  jax.block_until_ready(params)
  return params, time.perf_counter() - start


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains ``config.model`` on the copy task; writes metrics, results and a plot."""
  check_config(config)
  workdir = prepare_workdir(workdir, OUTPUTS)
  info = {**run_info(), **logged_git_state()}
  (workdir / 'config.json').write_text(config.to_json(indent=2))

  model = make_model(config)
  params = model.init(
    jax.random.fold_in(jax.random.key(config.seed), 0),
    jnp.zeros((1, config.bits + 2)),
  )
  count = sum(int(np.size(p)) for p in jax.tree.leaves(params))
  logging.info('%s: %d parameters', config.model, count)
  with JsonlWriter(workdir / 'metrics.jsonl') as writer:
    params, seconds = train(config, model, params, writer)
  results = {
    'run': info,
    'config': config.to_dict(),
    'parameters': count,
    'train': {
      'updates': config.num_updates,
      'sequences': config.num_updates * config.batch_size,
      'seconds': round(seconds, 1),
      'seconds_per_update': round(seconds / config.num_updates, 4),
    },
    'eval': evaluate(config, model, params),
  }
  (workdir / 'results.json').write_text(json.dumps(results, indent=2))
  write_params(workdir / PARAMS_FILE, params)
  plot([results], workdir / 'cost_vs_length.png')
  logging.info('wrote results to %s', workdir)
  return results


def load_trained(workdir: str | pathlib.Path):
  """``(config, model, params)`` of a finished run: its config, the model it
  builds, and the trained params that ``params.msgpack`` holds."""
  workdir = pathlib.Path(workdir)
  path = finished_params_file(workdir / PARAMS_FILE, 'copy-task')
  config = ml_collections.ConfigDict(json.loads((workdir / 'config.json').read_text()))
  model = make_model(config)
  template = model.init(jax.random.key(0), jnp.zeros((1, config.bits + 2)))
  return config, model, read_params(path, template)


def plot(all_results: list[dict], path: str | pathlib.Path) -> None:
  """Cost per sequence (bits) against length, one curve per run, the training
  lengths shaded (the paper's generalisation test, Sec. 4.1)."""
  # A Figure without pyplot: no global backend switch in the caller's process.
  from matplotlib.figure import Figure

  fig = Figure(figsize=(5.5, 3.8))
  ax = fig.subplots()
  for results in all_results:
    ev = results['eval']
    mean, ci = np.array(ev['cost_bits_mean']), np.array(ev['cost_bits_ci95'])
    ax.errorbar(
      ev['lengths'], mean, yerr=ci, marker='o', ms=3, capsize=2, label=label(results)
    )
  first = all_results[0]['config']
  ax.axvspan(
    first['min_length'],
    first['max_length'],
    color='0.9',
    zorder=0,
    label='training lengths',
  )
  run = all_results[0]['run']
  ax.set(
    xlabel='sequence length',
    ylabel='cost per sequence (bits)',
    title=f'copy task, {first["bits"]}-bit vectors ({hardware_label(run)})',
  )
  ax.title.set_fontsize(7)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
