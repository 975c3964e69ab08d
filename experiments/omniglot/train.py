"""Training loop for Omniglot meta-learning: checkpoints, validation, final test."""

from __future__ import annotations

import contextlib
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
from experiments import runs
from experiments.common import records
from experiments.common.checkpoint import Checkpointer
from experiments.common.progress import progress_bar
from experiments.common.run_info import hardware_label, logged_git_state, run_info
from experiments.common.workdir import JsonlWriter, completed_result
from experiments.omniglot import learners
from experiments.omniglot.configs.base import trains_on_validation
from jmeta.data import episodes, omniglot

# Changing these does not change the training trajectory, so a resumed run may differ
# in them from the run that wrote the checkpoints.
MAY_DIFFER_ON_RESUME = (
  'num_iterations',
  'log_every',
  'checkpoint_every',
  'eval_every',
  'eval.',
  'batching',
  'chunk_size',
  'remat',
  'model.conv_impl',
  'compare_every',
  'compare.',
)
# Fields added to the config after runs were started, at the values that reproduce
# those runs: a checkpoint whose config.json lacks one resumes at that value.
ADDED_FIELDS = {
  'model.batch_norm_scale': True,
  'model.batch_norm_eps': 1e-5,
  'model.head_init': 'glorot_uniform',
  'inner_adapts': 'all',
  'outer_clip_norm': 0.0,
  'persistent_inner_state': False,
  'data.train_split': 'train',
  'early_stopping_patience': 0,
  'model.matmul_precision': 'default',
  'model.block_init': 'glorot_uniform',
}
# Options of the Conv4 network (their defaults in ADDED_FIELDS), which a learner
# with its own network (Relation, Meta Networks, MANN) would ignore.
CONV4_FIELDS = ('batch_norm_scale', 'batch_norm_eps', 'head_init', 'block_init')
TRAIN_SPLITS = ('train', 'trainval')
MATMUL_PRECISIONS = ('default', 'high', 'highest')


def may_differ_on_resume(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """``MAY_DIFFER_ON_RESUME``, less num_iterations when the schedule anneals over it."""
  if config.outer_schedule in ('linear', 'cosine'):
    return tuple(f for f in MAY_DIFFER_ON_RESUME if f != 'num_iterations')
  return MAY_DIFFER_ON_RESUME


def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises ``ValueError`` naming the field for values the types cannot catch."""
  if config.algorithm not in learners.ALGORITHMS:
    raise ValueError(
      f'config.algorithm = {config.algorithm!r} is not one of {learners.ALGORITHMS}.'
    )
  # A learner that takes no model (Relation) brings its own network.
  conv4 = learners.takes_option(config, 'model')
  choices = {
    'data.protocol': (config.data.protocol, omniglot.PROTOCOLS),
    'inner_optimizer': (config.inner_optimizer, ('sgd', 'adam')),
    'outer_optimizer': (config.outer_optimizer, ('sgd', 'adam')),
    'model.compute_dtype': (
      config.model.get('compute_dtype', 'float32'),
      jmeta.models.COMPUTE_DTYPES,
    ),
    'outer_schedule': (
      config.outer_schedule,
      ('constant', 'linear', 'step', 'cosine'),
    ),
    'model.variant': (
      config.model.variant,
      jmeta.models.CONV4_VARIANTS if conv4 else (config.algorithm,),
    ),
    'model.head_init': (config.model.head_init, jmeta.models.HEAD_INITS),
    'model.block_init': (
      config.model.get('block_init', 'glorot_uniform'),
      jmeta.models.BLOCK_INITS,
    ),
    'data.train_split': (config.data.get('train_split', 'train'), TRAIN_SPLITS),
    'model.matmul_precision': (
      config.model.get('matmul_precision', 'default'),
      MATMUL_PRECISIONS,
    ),
    'inner_adapts': (config.inner_adapts, tuple(learners.INNER_ADAPTS)),
    'eval.batching': (
      config.eval.get('batching', ''),
      ('',) + jmeta.batching.BATCHING_STRATEGIES,
    ),
  }
  for field, (value, allowed) in choices.items():
    if value not in allowed:
      raise ValueError(f'config.{field} = {value!r} is not one of {tuple(allowed)}.')
  positive = (
    'meta_batch_size',
    'num_iterations',
    'log_every',
    'checkpoint_every',
    'eval_every',
  )
  for field in positive:
    if config[field] < 1:
      raise ValueError(f'config.{field} must be >= 1, got {config[field]}.')
  if not config.get('outer_clip_norm', 0.0) >= 0:
    raise ValueError(
      f'config.outer_clip_norm must be >= 0 (0: no clipping), got '
      f'{config.outer_clip_norm}.'
    )
  if config.batching == 'chunked' and config.meta_batch_size % config.chunk_size:
    raise ValueError(
      f'config.chunk_size={config.chunk_size} does not divide '
      f'config.meta_batch_size={config.meta_batch_size}.'
    )
  if not conv4 and config.model.get('compute_dtype') not in (None, 'float32'):
    raise ValueError(
      f'config.model.compute_dtype applies to Conv4; the {config.algorithm} learner '
      'has its own network and computes in float32. Leave it at float32.'
    )
  for field in () if conv4 else CONV4_FIELDS:
    value, default = config.model.get(field), ADDED_FIELDS[f'model.{field}']
    if value not in (None, default):
      raise ValueError(
        f'config.model.{field} = {value!r} applies to Conv4; the {config.algorithm} '
        f'learner has its own network, which it would ignore. Leave it at '
        f'{default!r}.'
      )
  extra = config.eval.get('extra_k_shots', ())
  if not isinstance(extra, (tuple, list)) or not all(
    isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in extra
  ):
    raise ValueError(
      f'config.eval.extra_k_shots = {extra!r} must be a tuple of positive ints, '
      'e.g. (5,).'
    )
  patience = config.get('early_stopping_patience', 0)
  if not isinstance(patience, int) or isinstance(patience, bool) or patience < 0:
    raise ValueError(
      'config.early_stopping_patience must be an int >= 0 (0: train all '
      f'config.num_iterations), got {patience!r}.'
    )
  if patience and trains_on_validation(config):
    raise ValueError(
      'config.early_stopping_patience needs the validation characters, which '
      "config.data.train_split='trainval' trains on. Early-stop a run on 'train', "
      "then train on 'trainval' for its length (results' early_stopping."
      'reference_trainval_iterations).'
    )
  learners.check_inner_batch_sizes(config)
  if config.algorithm in learners.METRIC_ALGORITHMS:
    learners.check_metric_config(config)
  if learners.has_class_head(config) and (
    test_ways(config) != (config.data.n_way,)
    or learners.train_n_way(config) != config.data.n_way
  ):
    raise ValueError(
      f'{config.algorithm} trains an {config.data.n_way}-way classifier head, so '
      'config.data.train_n_way and config.eval.extra_n_ways cannot change the '
      'number of classes; use one run per setting.'
    )


def extra_test_shots(config) -> tuple[int, ...]:
  """The extra K of ``config.eval.extra_k_shots``, tested at the setting's N."""
  extra = tuple(config.eval.get('extra_k_shots', ()))
  return tuple(k for k in extra if k != config.data.k_shot)


def test_ways(config) -> tuple[int, ...]:
  """The N of the test episodes: the config's setting first, then any extra N."""
  extra = tuple(config.eval.get('extra_n_ways', ()))
  return (config.data.n_way,) + tuple(n for n in extra if n != config.data.n_way)


def outer_optimizer(config) -> optax.GradientTransformation:
  lr = config.outer_learning_rate
  if config.outer_schedule == 'linear':
    lr = optax.linear_schedule(lr, 0.0, config.num_iterations)
  elif config.outer_schedule == 'cosine':
    # MAML++'s annealing: lr -> outer_min_learning_rate along a half cosine.
    lr = optax.cosine_decay_schedule(
      lr, config.num_iterations, alpha=config.get('outer_min_learning_rate', 0.0) / lr
    )
  elif config.outer_schedule == 'step':
    # ProtoNet's schedule: multiply by outer_decay_rate every outer_decay_every steps.
    lr = optax.exponential_decay(
      lr, config.outer_decay_every, config.outer_decay_rate, staircase=True
    )
  if config.outer_optimizer == 'sgd':
    optimizer = optax.sgd(lr)
  else:
    # iMAML's reference code uses Adam's eps = 1e-3 (config.outer_adam_eps).
    optimizer = optax.adam(lr, eps=config.get('outer_adam_eps', 1e-8))
  clip = config.get('outer_clip_norm', 0.0)
  if clip:
    # Only when set, so that the optimizer state of unclipped runs keeps its shape.
    return optax.chain(optax.clip_by_global_norm(clip), optimizer)
  return optimizer


def make_sampler(
  config,
  bank: jax.Array,
  *,
  train: bool = False,
  n_way: int | None = None,
  k_shot: int | None = None,
) -> episodes.EpisodeSampler:
  """Training episodes may use more classes, shots and queries (ProtoNet trains
  60-way, Reptile on 10 shots per class); test episodes may take another ``n_way``
  or ``k_shot`` than the setting's."""
  q_query, k_shot = config.data.q_query, k_shot or config.data.k_shot
  if train:
    n_way = learners.train_n_way(config)
    q_query = config.data.get('train_q_query', None) or q_query
    k_shot = learners.train_k_shot(config)
  return episodes.make_episode_sampler(
    bank,
    n_way=n_way or config.data.n_way,
    k_shot=k_shot,
    q_query=q_query,
    rotation=omniglot.protocol_rotation(config.data.protocol),
  )


def make_evaluator(
  config, learner: learners.Learner, sampler: episodes.EpisodeSampler, n_way: int
):
  """``evaluate(params, bank, num_episodes, seed) -> {'accuracy', 'loss'}``, each an
  array of one value per episode (``learners.Learner.metrics``).

  The episodes come from ``evaluation_keys(seed, num_episodes)``, and
  ``config.eval.episodes_per_call`` at a time are sampled by one jitted function and
  evaluated by another. The second depends only on the episodes' shapes, so the
  evaluators of the validation and test splits share one compiled program.
  """

  @jax.jit
  def sample_chunk(keys, bank):
    return jax.vmap(
      lambda k: jax.tree.map(lambda x: x[0], sampler.sample_from(bank, k, 1))
    )(keys)

  # jit caches by the function it wraps: every evaluator of this learner shares it.
  metrics = jax.jit(learner.metrics, static_argnums=2)

  def evaluate_chunk(params, keys, bank):
    return metrics(params, sample_chunk(keys, bank), n_way)

  def evaluate(
    params, bank, num_episodes: int, seed: int, desc: str = 'evaluation'
  ) -> dict[str, np.ndarray]:
    keys = episodes.evaluation_keys(seed, num_episodes)
    per_call = config.eval.episodes_per_call
    out, pending = [], None
    with progress_bar(
      total=num_episodes, desc=desc, unit='episode', leave=False
    ) as bar:
      # One call stays in flight while the one before it is fetched, so the bar
      # follows the device and the device does not wait for the host.
      for i in range(0, num_episodes, per_call):
        chunk = evaluate_chunk(params, keys[i : i + per_call], bank)
        if pending is not None:
          out.append(jax.device_get(pending))
          bar.update(len(out[-1]['accuracy']))
        pending = chunk
      out.append(jax.device_get(pending))
      bar.update(len(out[-1]['accuracy']))
    return {k: np.concatenate([o[k] for o in out]) for k in out[0]}

  return evaluate


def training_bank(config, banks: dict[str, jax.Array]) -> jax.Array:
  """The characters training episodes are drawn from: the train split, or with
  ``config.data.train_split='trainval'`` the train and validation splits together
  (ProtoNet's reference code retrains on both once validation has chosen the
  length, and reports that model)."""
  if trains_on_validation(config):
    return jnp.concatenate([banks['train'], banks['val']])
  return banks['train']


def early_stopping(val_losses, patience: int) -> tuple[int | None, int]:
  """``(index of the best validation, validations since it)``, ProtoNet's rule.

  A validation loss strictly below every earlier one is the new best and resets the
  count; any other (a NaN too) adds one. Training stops once the count exceeds
  ``patience`` (jakesnell/prototypical-networks, scripts/train/few_shot/train.py).
  """
  best, best_loss, wait = None, np.inf, 0
  for i, loss in enumerate(val_losses):
    if loss < best_loss:
      best, best_loss, wait = i, loss, 0
    else:
      wait += 1
  return best, wait


def training_mesh(config: ml_collections.ConfigDict) -> jax.sharding.Mesh | None:
  """The mesh the meta-batch is sharded over: this host's devices, or None for one
  (and for a learner whose inner state passes from task to task).

  Uses the most devices that split ``config.meta_batch_size`` evenly
  (``jmeta.task_mesh``). On a CPU, ``main``'s ``--cpu_devices`` sets how many host
  devices there are (default: one per core).
  """
  devices = jax.local_devices()
  if len(devices) == 1:
    return None
  if config.get('persistent_inner_state', False):
    logging.info('the inner state passes from task to task: tasks run on one device')
    return None
  mesh = jmeta.task_mesh(devices, num_tasks=config.meta_batch_size)
  logging.info(
    'sharding the meta-batch of %d tasks over %d of %d %s devices',
    config.meta_batch_size,
    mesh.size,
    len(devices),
    jax.default_backend(),
  )
  return None if mesh.size == 1 else mesh


def on_first_device(tree):
  """``tree`` on this host's first device, where evaluation runs."""
  return jax.device_put(tree, jax.local_devices()[0])


def memory_knobs(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The config fields that shrink a run's memory, for an out-of-memory error."""
  knobs = [
    f'--config.batching=chunked --config.chunk_size=<a divisor of '
    f'{config.meta_batch_size}> (or --config.batching=map: one task at a time)',
  ]
  if learners.takes_option(config, 'remat'):
    knobs.append('--config.remat=True (recomputes each inner step, same gradient)')
  if learners.takes_option(config, 'derivative_order_annealing_iterations'):
    knobs.append(
      f'first order for longer: --config.{config.algorithm}.'
      'derivative_order_annealing_iterations=<N>'
    )
  knobs.append(f'a smaller --config.meta_batch_size (now {config.meta_batch_size})')
  knobs.append(
    'for evaluation, a smaller --config.eval.episodes_per_call '
    f'(now {config.eval.episodes_per_call})'
  )
  return tuple(knobs)


@contextlib.contextmanager
def _explain_out_of_memory(config: ml_collections.ConfigDict):
  try:
    yield
  except (jmeta.MetaStepOutOfMemoryError, jax.errors.JaxRuntimeError) as e:
    cause = e.__cause__ if isinstance(e, jmeta.MetaStepOutOfMemoryError) else e
    if not jmeta.outer_loop.is_out_of_memory(cause):
      raise
    raise jmeta.outer_loop.out_of_memory_error(cause, memory_knobs(config)) from cause


def check_comparable(config, learner, meta_params, example_inputs) -> None:
  """Raises ``ValueError`` unless the meta-params are a classifier's own params.

  ``compare_every`` evaluates MAML-family meta-gradients at the trained params, so
  the learner must train the Conv4's params themselves (MAML, Reptile, ANIL,
  iMAML, ...), not meta-params with more in them (Meta-SGD's rates) or an
  embedding (the metric learners). State a learner carries (Reptile's inner Adam
  state) is left out.
  """
  # What the outer loop trains: a carried inner state is not compared.
  meta_params, _ = learner.estimator.carry.split(meta_params)
  if learner.model is not None:
    shapes = jax.eval_shape(learner.model.init, jax.random.key(0), example_inputs)
    if jax.tree.structure(shapes) == jax.tree.structure(meta_params):
      return
  raise ValueError(
    'config.compare_every compares meta-gradients at the trained params through '
    f"the Conv4 classifier's inner loop; {config.algorithm!r} trains "
    f'{"an embedding" if learner.model is None else type(meta_params).__name__}, '
    'not those params. Set it to 0.'
  )


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Meta-trains on Omniglot, resuming from ``workdir``'s checkpoints if any.

  Running out of device memory raises ``jmeta.MetaStepOutOfMemoryError`` naming
  the config fields that reduce memory.
  """
  check_config(config)
  complete = completed_result(workdir, config.num_iterations)
  if complete is not None:
    raise RunCompleteError(
      f'{workdir} holds a complete run of {config.num_iterations} iterations (or '
      f'one stopped early by validation): its results are in {complete} (and '
      'metrics.jsonl, learning_curve.png beside it). jmeta does not overwrite '
      'results; pass a new --workdir to train again.'
    )
  with (
    _explain_out_of_memory(config),
    runs.workdir_lock(workdir),
    matmul_precision(config),
  ):
    return _train_and_evaluate(config, workdir)


def matmul_precision(config: ml_collections.ConfigDict):
  """The context in which every step is traced: ``config.model.matmul_precision``
  as JAX's default precision of float32 matmuls and convolutions."""
  precision = config.model.get('matmul_precision', 'default')
  return jax.default_matmul_precision(None if precision == 'default' else precision)


class RunCompleteError(FileExistsError):
  """The workdir already holds the test results of this many iterations."""


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  workdir = pathlib.Path(workdir)
  checkpointer = Checkpointer(
    workdir,
    config.to_dict(),
    may_differ=may_differ_on_resume(config),
    added_fields=ADDED_FIELDS,
  )
  # Device-resident uint8 banks, passed to the jitted steps as arguments (a closed-over
  # array would be compiled into the program as a constant).
  banks = {
    s: jnp.asarray(omniglot.load_split(config.data.protocol, s))
    for s in omniglot.SPLITS
  }
  train_sampler = make_sampler(config, training_bank(config, banks), train=True)
  mesh = training_mesh(config)

  learner = learners.make_learner(config)
  probe = train_sampler.sample(jax.random.key(0), 1)
  jmeta.validate_task_batch(probe, num_classes=learners.train_n_way(config))
  root = jax.random.key(config.seed)
  params = learner.init(jax.random.fold_in(root, 0), probe.support_inputs[0])
  trainer = jmeta.with_task_sampling(
    jmeta.make_meta_trainer(learner.estimator, outer_optimizer(config), mesh=mesh),
    lambda key, bank: train_sampler.sample_from(bank, key, config.meta_batch_size),
  )
  # The trainer's inputs live on the mesh's devices; evaluation runs on the first.
  train_bank = training_bank(config, banks)
  if mesh is not None:
    train_bank = jmeta.replicate(train_bank, mesh)
  state = trainer.init(params)
  state, saved = checkpointer.resume(state)
  # The steps after the checkpoint are trained again: what was logged about them
  # goes, so every record reads as if the run had never stopped.
  resumed_at = int(state.step)
  logged = records.cut_jsonl(workdir / 'metrics.jsonl', resumed_at)
  records.cut_jsonl(workdir / 'compare.jsonl', resumed_at or -1)
  timing_lines = records.cut_timing(workdir / 'timing.jsonl', resumed_at, saved)
  ways = test_ways(config)
  evaluate = {
    (s, n): make_evaluator(
      config, learner, make_sampler(config, banks[s], n_way=n), n_way=n
    )
    for s in ('val', 'test')
    for n in ways
  }
  evaluate_shots = {
    k: make_evaluator(
      config,
      learner,
      make_sampler(config, banks['test'], k_shot=k),
      n_way=config.data.n_way,
    )
    for k in extra_test_shots(config)
  }

  compare_every = config.get('compare_every', 0)
  if compare_every:
    check_comparable(config, learner, state.params, probe.support_inputs[0])
    probe = learners.make_gradient_probe(config, learner)
    # One fixed training batch, so the curves show how the params change.
    probe_batch = train_sampler.sample(
      jax.random.fold_in(root, 2), config.meta_batch_size
    )
    compare_log = JsonlWriter(workdir / 'compare.jsonl')

    def compare(step: int, params) -> None:
      trained, _ = learner.estimator.carry.split(params)
      values = jax.device_get(probe(on_first_device(trained), probe_batch))
      compare_log.write(
        {
          'step': step,
          **{n: {k: float(v) for k, v in m.items()} for n, m in values.items()},
        }
      )

    if int(state.step) == 0:
      compare(0, state.params)

  train_key = jax.random.fold_in(root, 1)
  start_step = int(state.step)
  # Validation is on characters the run does not train on: none with 'trainval'.
  validates = not trains_on_validation(config)
  patience = config.get('early_stopping_patience', 0)
  # The validations before the checkpoint, so a resumed run stops where an
  # uninterrupted one does, and one that had stopped stays stopped.
  val_steps = [r['step'] for r in logged if 'val_loss' in r]
  val_losses = [r['val_loss'] for r in logged if 'val_loss' in r]

  def has_stopped() -> bool:
    return bool(patience) and early_stopping(val_losses, patience)[1] > patience

  stopped = has_stopped()
  end_step = start_step if stopped else config.num_iterations
  writer = JsonlWriter(workdir / 'metrics.jsonl')
  tb = records.tensorboard_writer(workdir / 'tensorboard', logged)
  seconds_before = sum(t['seconds'] for t in timing_lines)
  code = logged_git_state()
  start = time.perf_counter()
  if start_step < end_step:
    # Compiled before the first step, so the compiler's freed memory goes back to
    # the OS before the step's buffers are allocated; the loop reuses it.
    jmeta.precompile(
      trainer.step, state, jax.random.fold_in(train_key, start_step), train_bank
    )
    logging.info('compiled the meta-update in %.1f s', time.perf_counter() - start)
  with progress_bar(
    range(start_step, end_step),
    initial=start_step,
    total=config.num_iterations,
    desc=config.algorithm,
    unit='step',
  ) as bar:
    # Train metrics are summed on device and averaged over the steps since the last
    # log, so the loop never waits on the host between logs. A checkpoint between
    # two logs saves the partial sum, so a resumed run logs the same means.
    window, window_steps = _window_from(saved)
    for step in bar:
      state, metrics = trainer.step(
        state, jax.random.fold_in(train_key, step), train_bank
      )
      window = metrics if window is None else _add(window, metrics)
      window_steps += 1
      done = step + 1
      at_eval = done % config.eval_every == 0 or done == config.num_iterations
      validate = at_eval and validates
      # A validation step is logged too, whether or not log_every divides it.
      if done % config.log_every == 0 or at_eval:
        jmeta.raise_if_failed(state)
        record = {f'train_{k}': float(v) / window_steps for k, v in window.items()}
        window, window_steps = None, 0
        elapsed = seconds_before + time.perf_counter() - start
        record.update(step=done, elapsed_s=round(elapsed, 2))
        if validate:
          val = evaluate['val', ways[0]](
            on_first_device(state.params),
            banks['val'],
            config.eval.val_episodes,
            # Fresh episodes at each validation, as ProtoNet's reference code
            # draws them, or the same ones every time.
            config.eval.seed + (done if config.eval.get('val_resample') else 0),
            desc=f'validation {ways[0]}-way',
          )
          record['val_accuracy'] = float(val['accuracy'].mean())
          record['val_loss'] = float(val['loss'].mean())
          val_steps.append(done)
          val_losses.append(record['val_loss'])
          stopped = has_stopped()
          jmeta.release_host_memory()  # what compiling the evaluation freed
        _log(writer, tb, record)
        bar.set_postfix(
          loss=f'{record["train_loss"]:.3f}', acc=f'{record["train_accuracy"]:.3f}'
        )
      if compare_every and done % compare_every == 0:
        compare(done, state.params)
      if (
        done % config.checkpoint_every == 0 or done == config.num_iterations or stopped
      ):
        seconds = time.perf_counter() - start
        progress = {
          'step': done,
          'num_iterations': config.num_iterations,
          # Training time up to here, over every stretch of this run.
          'train_seconds': round(seconds_before + seconds, 1),
          'segment': {'from_step': start_step, 'seconds': seconds},
          **_window_record(window, window_steps),
          **code,
        }
        checkpointer.save(done, state, progress)
      if stopped:
        logging.info(
          'early stopping at step %d: %d validations without a lower loss',
          done,
          patience + 1,
        )
        break
  checkpointer.close()
  tb.close()
  writer.close()
  if compare_every:
    compare_log.close()
  train_seconds = time.perf_counter() - start
  # One line per stretch of training, so a resumed run's total training time is
  # known; a stretch that is stopped gets its line when the run resumes.
  if int(state.step) > start_step:
    with JsonlWriter(workdir / 'timing.jsonl') as timing:
      timing.write(
        {
          'from_step': start_step,
          'to_step': int(state.step),
          'seconds': round(train_seconds, 1),
          **code,
        }
      )
  total = sum(t['seconds'] for t in records.read_jsonl(workdir / 'timing.jsonl'))

  results = {
    # The commit this process started from, not the one checked out when it ends.
    'run': {**run_info(), **code},
    'config': config.to_dict(),
    'iterations': int(state.step),
    'resumed_from_step': start_step,
    'train_seconds_total': round(total, 1),
    'train_devices': 1 if mesh is None else mesh.size,
    'test': {},
  }
  if patience:
    best, _ = early_stopping(val_losses, patience)
    best_step = val_steps[best] if best is not None else None
    results['early_stopping'] = {
      'patience': patience,
      'stopped': stopped,
      'best_step': best_step,
      'best_val_loss': val_losses[best] if best is not None else None,
      # The reference retrains on train + val for (best epoch + patience) epochs,
      # its best epoch counted from 0 and an epoch being eval_every episodes.
      'reference_trainval_iterations': (
        None if best_step is None else best_step + (patience - 1) * config.eval_every
      ),
    }
  params = on_first_device(state.params)

  def test(evaluator, into: dict, what: str) -> None:
    for n in config.eval.test_episodes:
      acc = evaluator(
        params, banks['test'], n, config.eval.seed + 1, desc=f'test {what}'
      )['accuracy']
      mean, ci = jmeta.mean_confidence_interval(acc)
      # Each episode's accuracy too, so the mean and interval can be checked and
      # other statistics computed from the record alone.
      into[str(n)] = {
        'accuracy': float(mean),
        'ci95': float(ci),
        'episode_accuracies': [float(a) for a in np.asarray(acc)],
      }
      logging.info(
        'test accuracy, %s, over %d episodes: %.4f +- %.4f', what, n, mean, ci
      )

  # The config's own setting keeps the top-level 'test' key; other N-way or K-shot
  # evaluations of the same params go under 'test_extra_ways' / 'test_extra_shots'.
  for way in ways:
    into = results['test']
    if way != ways[0]:
      into = results.setdefault('test_extra_ways', {}).setdefault(str(way), {})
    test(evaluate['test', way], into, f'{way}-way')
  for shot, evaluator in evaluate_shots.items():
    into = results.setdefault('test_extra_shots', {}).setdefault(str(shot), {})
    test(evaluator, into, f'{config.data.n_way}-way {shot}-shot')
  out = workdir / f'test_step{int(state.step)}.json'
  if out.exists():
    raise FileExistsError(
      f'{out} exists; jmeta does not overwrite results. Move it away to re-evaluate.'
    )
  out.write_text(json.dumps(results, indent=2))
  plot_learning_curve(
    workdir / 'metrics.jsonl',
    workdir / 'learning_curve.png',
    title=f'{config.algorithm} {config.setting} ({hardware_label(results["run"])})',
  )
  return {'state': state, **results}


@jax.jit
def _add(a, b):
  return jax.tree.map(jnp.add, a, b)


def _window_record(window, window_steps: int) -> dict:
  """The train metrics summed since the last log, for a checkpoint's progress."""
  if not window_steps:
    return {}
  return {
    'window': {k: float(v) for k, v in window.items()},
    'window_dtypes': {k: str(v.dtype) for k, v in window.items()},
    'window_steps': window_steps,
  }


def _window_from(progress: dict):
  """``_window_record``'s sums as device scalars of their dtypes (exactly)."""
  if not progress.get('window_steps'):
    return None, 0
  dtypes = progress['window_dtypes']
  window = {k: jnp.asarray(v, dtypes[k]) for k, v in progress['window'].items()}
  return window, progress['window_steps']


def _log(writer: JsonlWriter, tb, record: dict) -> None:
  writer.write(record)
  records.add_scalars(tb, record)
  logging.info(
    'step %d: %s',
    record['step'],
    ', '.join(f'{k} {v:.4f}' for k, v in record.items() if k != 'step'),
  )


def plot_learning_curve(metrics_path: pathlib.Path, path: pathlib.Path, title: str):
  """Train loss/accuracy and validation accuracy against the iteration; returns the
  matplotlib Figure (saved to ``path``)."""
  # A Figure without pyplot: no global backend switch in the caller's process (a
  # notebook keeps its inline plots).
  from matplotlib.figure import Figure

  logged = records.read_jsonl(metrics_path)
  fig = Figure(figsize=(9, 3.4))
  ax_loss, ax_acc = fig.subplots(1, 2)
  steps = [r['step'] for r in logged]
  # One point draws no line: a marker shows it, and a note says there is no curve.
  style = '-' if len(logged) > 1 else 'o'
  ax_loss.plot(steps, [r['train_loss'] for r in logged], style)
  ax_loss.set(xlabel='iteration', ylabel='query loss (train)', yscale='log')
  ax_acc.plot(
    steps, [r['train_accuracy'] for r in logged], style, label='train (query)'
  )
  val = [(r['step'], r['val_accuracy']) for r in logged if 'val_accuracy' in r]
  if val:
    ax_acc.plot(*zip(*val), 'o-', label='validation')
  ax_acc.set(xlabel='iteration', ylabel='accuracy after adaptation')
  ax_acc.legend()
  if len(logged) < 2:
    note = (
      f'a single logged point (step {steps[0]}): no curve to draw; '
      'log more often with --config.log_every'
      if logged
      else 'nothing logged: no curve to draw'
    )
    fig.text(0.5, 0.02, note, ha='center', fontsize=9, color='firebrick')
  fig.suptitle(title, fontsize=9)
  fig.tight_layout(rect=(0, 0.06, 1, 1) if len(logged) < 2 else None)
  fig.savefig(path, dpi=100)
  return fig
