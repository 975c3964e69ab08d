"""Training and evaluation loop of the neural statistician on Omniglot.

Each update draws ``batch_size`` sets of ``data.set_size`` drawings, each set one
class of the background characters (rotations as classes), on device inside the
jitted update, flips and turns a share ``data.augment_probability`` of the sets,
binarises them afresh (``data.binarize``) and takes one Adam step on the
reweighted bound. It logs to ``metrics.jsonl`` and TensorBoard and checkpoints so that a
stopped run resumes exactly. At the end, on the 423 test characters: the lower
bound per image (``results.json``), few-shot accuracy by the posterior over c on
fixed test episodes, and a grid of conditioning sets and samples (``samples.png``).
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import time
from typing import NamedTuple

import dm_pix as pix
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
from experiments.neural_statistician import plot
from experiments.omniglot.configs.base import SETTINGS, parse_setting
from jmeta import neural_statistician as ns
from jmeta.data import episodes, omniglot

OUTPUTS = ('results.json', 'samples.png')
# Changing these does not change the training trajectory.
MAY_DIFFER_ON_RESUME = ('num_iterations', 'log_every', 'checkpoint_every', 'eval.')
# Fields added to the config after runs were started, at the values those runs had.
ADDED_FIELDS = {
  'data.resize': 'maml',
  'data.augment_probability': 0.0,
  'model.sample_dropout': None,
  'model.pool_count': True,
}


class TrainState(NamedTuple):
  step: jax.Array
  params: dict
  opt_state: optax.OptState


def _check_positive_ints(group, prefix: str, fields) -> None:
  bad = [f for f in fields if not isinstance(group[f], int) or group[f] < 1]
  if bad:
    value = group[bad[0]]
    raise ValueError(f'config.{prefix}{bad[0]} must be a positive int, got {value}.')


def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises ``ValueError`` naming the field for values the types cannot catch."""
  counts = ('batch_size', 'num_iterations', 'log_every', 'checkpoint_every')
  _check_positive_ints(config, '', (*counts, 'alpha_halve_every'))
  if config.checkpoint_every % config.log_every:
    raise ValueError(
      'config.checkpoint_every must be a multiple of config.log_every (got '
      f'{config.checkpoint_every} and {config.log_every}), so that a resumed run '
      'logs the same windows.'
    )
  if config.data.resize not in omniglot.RESIZES:
    raise ValueError(
      f'config.data.resize must be one of {omniglot.RESIZES}, got '
      f'{config.data.resize!r}.'
    )
  if not 0.0 <= config.data.augment_probability <= 1.0:
    raise ValueError(
      'config.data.augment_probability must lie in [0, 1], got '
      f'{config.data.augment_probability}.'
    )
  if not 1 <= config.data.set_size <= omniglot.NUM_DRAWINGS - 1:
    raise ValueError(
      f'config.data.set_size = {config.data.set_size} must lie in 1..'
      f'{omniglot.NUM_DRAWINGS - 1} (a set is drawings of one character).'
    )
  bad = [s for s in config.eval.settings if s not in SETTINGS]
  if bad:
    raise ValueError(f'config.eval.settings has {bad}; each must be one of {SETTINGS}.')
  ev = config.eval
  _check_positive_ints(ev, 'eval.', ('num_episodes', 'q_query', 'elbo_draws'))
  _check_positive_ints(ev, 'eval.', ('episodes_per_call', 'sets_per_call'))
  if ev.num_episodes < 2 or ev.num_episodes % ev.episodes_per_call:
    raise ValueError(
      f'config.eval.num_episodes ({ev.num_episodes}) must be at least 2 and a '
      f'multiple of config.eval.episodes_per_call ({ev.episodes_per_call}).'
    )
  make_model(config)  # the model's own checks of config.model


def make_model(config) -> ns.NeuralStatistician:
  return ns.neural_statistician(**config.model.to_dict())


def make_optimizer(config) -> optax.GradientTransformation:
  """Adam, each gradient entry first clipped as the reference code's clamp."""
  return optax.chain(optax.clip(config.gradient_clip), optax.adam(config.learning_rate))


def initial_state(config, model, optimizer, key) -> TrainState:
  """Update 0: the model initialised from ``key`` and the optimizer's fresh state."""
  example = jnp.zeros((config.data.set_size, *model.image_shape))
  params = model.init(key, example)
  return TrainState(jnp.zeros((), jnp.int32), params, optimizer.init(params))


def alpha(config, step: jax.Array) -> jax.Array:
  """The reweighting a of update ``step``: ``alpha_initial`` halved every
  ``alpha_halve_every`` updates (the reference code halves it every epoch)."""
  halvings = (step // config.alpha_halve_every).astype(jnp.float32)
  return config.alpha_initial * 0.5**halvings


def load_banks(config) -> dict[str, jax.Array]:
  """uint8 image banks: ``train`` (the background characters) and ``test``."""
  protocol, resize = config.data.protocol, config.data.resize
  train = np.concatenate(
    [omniglot.load_split(protocol, s, resize=resize) for s in config.data.train_splits]
  )
  test = omniglot.load_split(protocol, 'test', resize=resize)
  return {'train': jnp.asarray(train), 'test': jnp.asarray(test)}


def transform_set(
  images: jax.Array, flip_left_right: jax.Array, flip_up_down: jax.Array, angle
) -> jax.Array:
  """One transform for every image of a set ``(set_size, H, W, C)``: the flips that
  are on, then a counter-clockwise turn by ``angle`` radians about the centre
  (bilinear, zero outside), as ``skimage.transform.rotate`` in the reference code."""

  def one(image):
    image = jnp.where(flip_left_right, pix.flip_left_right(image), image)
    image = jnp.where(flip_up_down, pix.flip_up_down(image), image)
    return pix.rotate(image, angle, order=1, mode='constant', cval=0.0)

  return jax.vmap(one)(images)


def augment_sets(key, sets: jax.Array, probability: float) -> jax.Array:
  """The reference code's augmentation (``omnidata.py``), drawn afresh: each set of
  ``sets`` ``(sets, set_size, H, W, C)``, with ``probability``, flipped left-right
  and up-down each with probability 1/2, then turned by an angle uniform in
  [0, 2 pi); the reference trains on its sets and one such copy of each, so 1/2."""

  def one(k, images):
    k_apply, k_lr, k_ud, k_angle = jax.random.split(k, 4)
    turned = transform_set(
      images,
      jax.random.bernoulli(k_lr),
      jax.random.bernoulli(k_ud),
      jax.random.uniform(k_angle, maxval=2 * jnp.pi),
    )
    return jnp.where(jax.random.bernoulli(k_apply, probability), turned, images)

  return jax.vmap(one)(jax.random.split(key, sets.shape[0]), sets)


def make_update(config, model: ns.NeuralStatistician, optimizer, train_bank):
  """``update(state, key, bank) -> (state, metrics)``, jitted; samples its sets."""
  size = config.data.set_size
  sampler = episodes.make_episode_sampler(
    train_bank,
    n_way=config.batch_size,
    k_shot=size,
    q_query=1,  # unused: the sampler needs a query set
    rotation=omniglot.protocol_rotation(config.data.protocol),
  )

  def update(state: TrainState, key, bank):
    draw_key, binary_key, loss_key = jax.random.split(key, 3)
    batch = sampler.sample_from(bank, draw_key, 1)
    images = batch.support_inputs[0]
    sets = images.reshape(config.batch_size, size, *images.shape[1:])
    if config.data.augment_probability:
      # A key of its own, so that runs without augmentation draw what they drew.
      augment_key = jax.random.fold_in(key, 3)
      sets = augment_sets(augment_key, sets, config.data.augment_probability)
    if config.data.binarize:
      sets = ns.dynamic_binarization(binary_key, sets)
    a = alpha(config, state.step)
    grad = jax.grad(model.loss, has_aux=True)
    grads, (metrics, stats) = grad(state.params, sets, loss_key, a)
    # The running averages' gradient is zero, so Adam leaves them; then they are
    # replaced by this batch's update.
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = model.with_batch_stats(optax.apply_updates(state.params, updates), stats)
    metrics = {**metrics, 'alpha': a}
    return TrainState(state.step + 1, params, opt_state), metrics

  return jax.jit(update, donate_argnums=0)


def _chunked(fn, arrays, size: int) -> np.ndarray:
  """``fn`` over ``arrays`` (leading axis) ``size`` at a time, the last chunk
  padded with its first rows so that every call has one shape (one compile)."""
  total = arrays.shape[0]
  out = []
  for i in range(0, total, size):
    chunk = arrays[i : i + size]
    real = chunk.shape[0]
    if real < size:
      chunk = jnp.concatenate([chunk, jnp.repeat(chunk[:1], size - real, 0)])
    out.append(np.asarray(fn(chunk))[:real])
  return np.concatenate(out)


def test_sets(config, test_bank) -> jax.Array:
  """Every test character's drawings cut into sets of ``set_size`` (float32 in [0, 1],
  ``(sets, set_size, 28, 28, 1)``), in drawing order; leftover drawings unused."""
  size = config.data.set_size
  per = omniglot.NUM_DRAWINGS // size
  images = test_bank[:, : per * size].astype(jnp.float32) / 255.0
  return images.reshape(-1, size, *images.shape[2:], 1)


def evaluate_elbo(config, model, params, test_bank) -> dict:
  """The lower bound (alpha = 0) per image on the test characters' sets, mean and
  95% interval over sets, each the mean of ``eval.elbo_draws`` one-draw estimates."""
  sets = test_sets(config, test_bank)
  draws = config.eval.elbo_draws
  key = jax.random.fold_in(jax.random.key(config.eval.seed), 3)

  @jax.jit
  def per_set(chunk):
    def one(s, k):
      keys = jax.random.split(k, draws)
      terms = jax.vmap(lambda kk: model.elbo_terms(params, s, kk))(keys)
      return jax.tree.map(lambda t: jnp.mean(t) / s.shape[0], terms)

    keys = jax.random.split(key, chunk.shape[0])  # same keys per chunk position
    terms = jax.vmap(one)(chunk, keys)
    return jnp.stack([terms.reconstruction, terms.kl_z, terms.kl_c], -1)

  values = _chunked(per_set, sets, config.eval.sets_per_call)
  recon, kl_z, kl_c = values.T
  out = {'sets': int(sets.shape[0]), 'set_size': config.data.set_size, 'draws': draws}
  for name, v in (
    ('elbo', recon - kl_z - kl_c),
    ('reconstruction', recon),
    ('kl_z', kl_z),
    ('kl_c', kl_c),
  ):
    mean, ci = jmeta.mean_confidence_interval(v)
    out[name] = {'mean': float(mean), 'ci95': float(ci)}
  return out


def evaluate_few_shot(
  config, model, params, test_bank, setting: str, logits_fn=None
) -> dict:
  """Accuracy on ``eval.num_episodes`` fixed test episodes of ``logits_fn(params,
  support, support_labels, query, n_way)``; default ``model.classify``, the KL rule."""
  logits_fn = model.classify if logits_fn is None else logits_fn
  n_way, k_shot = parse_setting(setting)
  sampler = episodes.make_episode_sampler(
    test_bank,
    n_way=n_way,
    k_shot=k_shot,
    q_query=config.eval.q_query,
    rotation=omniglot.protocol_rotation(config.data.protocol),
  )

  @jax.jit
  def chunk_accuracy(keys, bank):
    def one(k):
      task = jax.tree.map(lambda x: x[0], sampler.sample_from(bank, k, 1))
      logits = logits_fn(
        params, task.support_inputs, task.support_targets, task.query_inputs, n_way
      )
      return jmeta.losses.accuracy(logits, task.query_targets)

    return jax.lax.map(one, keys)

  keys = episodes.evaluation_keys(config.eval.seed + 1, config.eval.num_episodes)
  per_call = config.eval.episodes_per_call
  accuracies = np.concatenate(
    [
      np.asarray(chunk_accuracy(keys[i : i + per_call], test_bank))
      for i in range(0, config.eval.num_episodes, per_call)
    ]
  )
  mean, ci = jmeta.mean_confidence_interval(accuracies)
  return {
    'n_way': n_way,
    'k_shot': k_shot,
    'q_query': config.eval.q_query,
    'episodes': config.eval.num_episodes,
    'accuracy': float(mean),
    'ci95': float(ci),
  }


def conditioned_samples(config, model, params, test_bank) -> dict:
  """The first ``eval.grid_characters`` test characters: their first ``set_size``
  drawings and ``eval.grid_samples`` new images generated from them."""
  sets = test_sets(config, test_bank)[:: omniglot.NUM_DRAWINGS // config.data.set_size]
  sets = sets[: config.eval.grid_characters]
  key = jax.random.fold_in(jax.random.key(config.eval.seed), 4)
  sample = jax.jit(lambda s, k: model.sample(params, s, k, config.eval.grid_samples))
  samples = [sample(s, jax.random.fold_in(key, i)) for i, s in enumerate(sets)]
  return {'conditioning': np.asarray(sets), 'samples': np.asarray(jnp.stack(samples))}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains the neural statistician, resuming from ``workdir``'s checkpoints if any,
  then evaluates it on the test characters; returns the results and final state."""
  check_config(config)
  workdir = prepare_workdir(workdir, OUTPUTS)
  with runs.workdir_lock(workdir):
    return _train_and_evaluate(config, workdir)


def _log_window(window: list, done: int, elapsed: float) -> dict:
  window = jax.device_get(window)
  record = {f'train_{k}': float(np.mean([m[k] for m in window])) for k in window[0]}
  return {**record, 'step': done, 'elapsed_s': round(elapsed, 2)}


def _run_updates(
  config, update, state, bank, workdir, checkpointer, tb, seconds_before: float
):
  """Updates ``state`` to ``config.num_iterations``, logging every ``log_every``
  and checkpointing every ``checkpoint_every`` updates (and at the last); returns
  the state and this stretch's seconds. Update ``t`` draws from
  ``fold_in(fold_in(key(seed), 1), t)``, so a resumed run repeats its draws."""
  train_key = jax.random.fold_in(jax.random.key(config.seed), 1)
  first, total = int(state.step), config.num_iterations
  start = time.perf_counter()
  steps = range(first, total)
  bar = progress_bar(
    steps, initial=first, total=total, desc='neural statistician', unit='update'
  )
  window = []
  with JsonlWriter(workdir / 'metrics.jsonl') as writer, bar:
    for step in bar:
      state, metrics = update(state, jax.random.fold_in(train_key, step), bank)
      window.append(metrics)
      done = step + 1
      last = done == total
      seconds = seconds_before + time.perf_counter() - start
      if last or not done % config.log_every:
        record = _log_window(window, done, seconds)
        window = []
        if not math.isfinite(record['train_loss']):
          raise FloatingPointError(f'non-finite loss at update {done}: {record}')
        writer.write(record)
        records.add_scalars(tb, record)
        bar.set_postfix(elbo=f'{record["train_elbo"]:.1f}')
      if last or not done % config.checkpoint_every:
        checkpointer.save(done, state, {'step': done, 'train_seconds': seconds})
  jax.block_until_ready(state)
  return state, time.perf_counter() - start


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: pathlib.Path):
  load_start = os.getloadavg()
  checkpointer = Checkpointer(
    workdir,
    config.to_dict(),
    may_differ=MAY_DIFFER_ON_RESUME,
    added_fields=ADDED_FIELDS,
  )
  banks = load_banks(config)
  model = make_model(config)
  root = jax.random.key(config.seed)
  optimizer = make_optimizer(config)
  state = initial_state(config, model, optimizer, jax.random.fold_in(root, 0))
  count = sum(int(np.size(p)) for p in jax.tree.leaves(state.params))
  state, saved = checkpointer.resume(state)
  start_step = int(state.step)
  logged = records.cut_jsonl(workdir / 'metrics.jsonl', start_step)
  tb = records.tensorboard_writer(workdir / 'tensorboard', logged)
  seconds_before = saved.get('train_seconds', 0.0)
  update = make_update(config, model, optimizer, banks['train'])
  code = logged_git_state()

  state, stretch = _run_updates(
    config, update, state, banks['train'], workdir, checkpointer, tb, seconds_before
  )
  checkpointer.close()
  tb.close()
  trained = int(state.step) - start_step
  load_trained = os.getloadavg()

  eval_start = time.perf_counter()
  elbo = evaluate_elbo(config, model, state.params, banks['test'])
  logging.info('test lower bound per image: %s', elbo['elbo'])
  few_shot = {}
  for setting in config.eval.settings:
    few_shot[setting] = evaluate_few_shot(
      config, model, state.params, banks['test'], setting
    )
    logging.info('%s: %s', setting, few_shot[setting])
  grid = conditioned_samples(config, model, state.params, banks['test'])
  plot.plot_samples(grid, workdir / 'samples.png')
  per_update = (
    stretch / trained if trained else saved.get('seconds_per_update', math.nan)
  )
  results = {
    # The commit this process started from, not the one checked out when it ends.
    'run': {**run_info(), **code},
    'config': config.to_dict(),
    'test_elbo': elbo,
    'few_shot': few_shot,
    'parameters': count,
    'iterations': int(state.step),
    'resumed_from_update': start_step,
    'paper_iterations': config.paper_iterations,
    'seconds_per_update': per_update,
    'train_seconds_total': round(seconds_before + stretch, 1),
    'eval_seconds': round(time.perf_counter() - eval_start, 1),
    # 1/5/15-minute load averages of the machine (os.getloadavg) when training
    # started and ended: a shared machine's load slows every number here.
    'load_average': {'start': list(load_start), 'end_of_training': list(load_trained)},
    **code,
  }
  (workdir / 'results.json').write_text(json.dumps(results, indent=2))
  logging.info('wrote results to %s', workdir)
  return {'state': state, **results}
