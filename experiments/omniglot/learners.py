"""Builds each algorithm's model, meta-gradient estimator and test-time evaluation.

Gradient-based learners (MAML, first-order MAML, Reptile) adapt a Conv4 classifier
in an inner loop; metric learners (ProtoNet, Matching, Relation, Siamese) score
queries against the support set through an embedding and need no inner loop.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import ml_collections
import optax

import jmeta
from jmeta import metric
from jmeta.imaml import check_proximal_sgd
from jmeta.metric import losses as metric_losses
from jmeta.metric.matching import matching
from jmeta.metric.relation import relation_network
from jmeta.metric.siamese import SIAMESE_LOSSES, siamese

GRADIENT_ALGORITHMS = (
  'maml',
  'fomaml',
  'reptile',
  'imaml',
  'meta_sgd',
  'anil',
  'maml_plus_plus',
)
METRIC_ALGORITHMS = ('protonet', 'matching', 'relation', 'siamese')
# The algorithms whose estimators take remat=True (config.remat).
REMAT_ALGORITHMS = ('maml', 'fomaml', 'meta_sgd', 'anil', 'maml_plus_plus')
ALGORITHMS = GRADIENT_ALGORITHMS + METRIC_ALGORITHMS
EMBEDDING_LOSSES = ('none', 'center', 'triplet_batch_hard', 'triplet_semi_hard')


class Learner(NamedTuple):
  """What the training loop needs from an algorithm.

  Attributes:
    init: ``init(key, example_inputs) -> params``.
    estimator: the meta-gradient estimator for training episodes.
    accuracy: ``accuracy(params, batch, n_way) -> per-task query accuracy`` after
      the algorithm's test-time adaptation, for ``n_way``-way episodes.
    model: the adapted classifier of gradient-based learners (None for metric
      learners).
  """

  init: Callable
  estimator: jmeta.MetaGradientEstimator
  accuracy: Callable[[jmeta.models.base.Params, jmeta.TaskBatch, int], jax.Array]
  model: jmeta.Model | None = None


def inner_optimizer(config) -> optax.GradientTransformation:
  if config.inner_optimizer == 'adam':
    # eps_root > 0 keeps second derivatives through Adam finite.
    return optax.adam(config.inner_learning_rate, b1=0.0, eps_root=1e-8)
  return optax.sgd(config.inner_learning_rate)


def train_n_way(config) -> int:
  return config.data.get('train_n_way', None) or config.data.n_way


def train_k_shot(config) -> int:
  return config.data.get('train_k_shot', None) or config.data.k_shot


def inner_batch_size(config, *, train: bool) -> int | None:
  """Reptile's inner minibatch (config.inner_batch_size, config.eval.inner_batch_size);
  None (0 in the config) for full-batch inner steps on the support set."""
  return (config if train else config.eval).get('inner_batch_size', 0) or None


def check_inner_batch_sizes(config) -> None:
  """Raises ``ValueError`` naming the field for an inner batch the support can't fill."""
  for field, train, shots in (
    ('inner_batch_size', True, train_k_shot(config)),
    ('eval.inner_batch_size', False, config.data.k_shot),
  ):
    size, support = inner_batch_size(config, train=train), config.data.n_way * shots
    if size is None:
      continue
    if config.algorithm != 'reptile':
      raise ValueError(
        f'config.{field} applies to reptile only; {config.algorithm!r} takes '
        'full-batch inner steps. Leave it at 0.'
      )
    if size < 0 or size > support:
      raise ValueError(
        f'config.{field} = {size} must be between 1 and the {support} support '
        f'images of a {"training" if train else "test"} episode ({config.data.n_way} '
        f'ways x {shots} shots), or 0 for full-batch steps.'
      )


def _chunk(config) -> int | None:
  return config.chunk_size if config.batching == 'chunked' else None


def bn_weight_leaves(path: tuple) -> bool:
  """Conv4's batch-norm scale and bias: MAML++'s per-step batch-norm weights."""
  return path[-1].key in ('scale', 'bias')


def _maml_plus_plus_options(config) -> dict:
  options = config.maml_plus_plus
  return {
    'inner_learning_rate': config.inner_learning_rate,
    'multi_step_loss': options.msl_anneal_iterations > 0,
    'msl_anneal_iterations': options.msl_anneal_iterations,
    'derivative_order_annealing_iterations': (
      options.derivative_order_annealing_iterations
    ),
    'learn_inner_rates': options.learn_inner_rates,
    'per_step_bn_weights': bn_weight_leaves if options.per_step_bn_weights else None,
  }


def _estimator_options(config) -> dict:
  """The keyword arguments of ``jmeta.make_estimator`` for ``config.algorithm``."""
  algorithm = config.algorithm
  options = {
    'batching': config.batching,
    'chunk_size': _chunk(config),
    'metrics_fn': jmeta.losses.classification_metrics,
    'inner_steps': config.inner_steps,
  }
  if algorithm == 'maml_plus_plus':
    # Plain SGD inner steps at fixed or learned per-layer, per-step rates.
    options.update(_maml_plus_plus_options(config))
  elif algorithm != 'meta_sgd':  # Meta-SGD's rates are meta-parameters
    options['inner_optimizer'] = inner_optimizer(config)
  if algorithm == 'reptile':
    options['inner_batch_size'] = inner_batch_size(config, train=True)
  if algorithm in REMAT_ALGORITHMS:
    options['remat'] = config.get('remat', False)
  if algorithm == 'imaml':
    options.update(
      regularization=config.imaml.regularization, cg_steps=config.imaml.cg_steps
    )
  return options


def _adapter(config, model: jmeta.Model) -> Callable:
  """``adapt(params, support_inputs, support_labels) -> classifier params`` at test."""
  loss, steps = jmeta.losses.cross_entropy, config.eval.inner_steps
  if config.algorithm == 'meta_sgd':
    return lambda p, x, y: jmeta.meta_sgd_adapt(model, loss, p, x, y, steps=steps)
  if config.algorithm == 'maml_plus_plus':
    # The learned per-step rates and batch-norm weights (the last ones beyond K).
    return lambda p, x, y: jmeta.maml_plus_plus_adapt(
      model, loss, p, x, y, steps=steps, inner_learning_rate=config.inner_learning_rate
    )
  if config.algorithm == 'anil':
    return lambda p, x, y: jmeta.anil_adapt(
      model, loss, p, x, y, steps=steps, optimizer=inner_optimizer(config)
    )
  if config.algorithm == 'imaml':
    # iMAML adapts on its proximal objective at test time too.
    return lambda p, x, y: jmeta.imaml_adapt(
      model,
      loss,
      p,
      x,
      y,
      steps=steps,
      regularization=config.imaml.regularization,
      optimizer=inner_optimizer(config),
    )
  # Reptile's test adaptation may take minibatches of the support set, each
  # episode's order keyed by its images (jmeta.inner_loop.data_key).
  batch_size = inner_batch_size(config, train=False)
  return lambda p, x, y: jmeta.adapt(
    model,
    loss,
    p,
    x,
    y,
    steps=steps,
    optimizer=inner_optimizer(config),
    batch_size=batch_size,
  )


def conv4(config, num_classes: int) -> jmeta.Model:
  """The config's Conv4, in its compute dtype."""
  model = jmeta.conv4(
    num_classes,
    variant=config.model.variant,
    filters=config.model.filters,
    conv_impl=config.model.conv_impl,
  )
  dtype = config.model.get('compute_dtype', 'float32')
  return model if dtype == 'float32' else jmeta.models.mixed_precision(model, dtype)


def _check_imaml_inner_loop(config) -> None:
  """Refuses SGD rates at which iMAML's proximal inner loop diverges, before training."""
  if config.inner_optimizer != 'sgd':
    return
  lr, lam = config.inner_learning_rate, config.imaml.regularization
  for field in ('inner_steps', 'eval.inner_steps'):
    steps = config.inner_steps if field == 'inner_steps' else config.eval.inner_steps
    try:
      check_proximal_sgd(lr, lam, steps)
    except ValueError as e:
      raise ValueError(
        f'config.inner_learning_rate = {lr} with config.imaml.regularization = '
        f'{lam} and config.{field} = {steps}: {e}'
      ) from e


def _gradient_learner(config) -> Learner:
  if config.algorithm == 'imaml':
    _check_imaml_inner_loop(config)
  n_way = config.data.n_way
  model = conv4(config, n_way)
  name = 'maml++' if config.algorithm == 'maml_plus_plus' else config.algorithm
  estimator = jmeta.make_estimator(
    name, model, jmeta.losses.cross_entropy, **_estimator_options(config)
  )
  adapt = _adapter(config, model)

  def accuracy(params, batch, n_way):
    del n_way  # the head fixes it; check_config rejects other test ways

    def one(task):
      task = jmeta.Task(*task)
      adapted = adapt(params, task.support_inputs, task.support_targets)
      logits = model.apply(adapted, task.query_inputs)
      return jmeta.losses.accuracy(logits, task.query_targets)

    return jmeta.map_tasks(
      one, batch, strategy=config.batching, chunk_size=_chunk(config)
    )

  init = model.init
  if config.algorithm == 'meta_sgd':

    def init(key, example_inputs):
      return jmeta.meta_sgd_params(
        model.init(key, example_inputs), config.inner_learning_rate
      )

  elif config.algorithm == 'maml_plus_plus':
    options = _maml_plus_plus_options(config)

    def init(key, example_inputs):
      return jmeta.maml_plus_plus_params(
        model.init(key, example_inputs),
        inner_steps=config.inner_steps,
        inner_learning_rate=config.inner_learning_rate,
        learn_inner_rates=options['learn_inner_rates'],
        per_step_bn_weights=options['per_step_bn_weights'],
      )

  return Learner(init, estimator, accuracy, model)


def embedding_loss(config) -> Callable | None:
  name, margin = config.metric.embedding_loss, config.metric.margin
  if name == 'none':
    return None
  if name == 'center':
    return metric_losses.center_loss
  if name == 'triplet_batch_hard':
    return functools.partial(metric_losses.batch_hard_triplet_loss, margin=margin)
  return functools.partial(metric_losses.batch_semi_hard_triplet_loss, margin=margin)


def metric_learner(config) -> metric.MetricLearner:
  """The ``MetricLearner`` named by ``config.algorithm``."""
  bn = config.model.batch_norm
  if config.algorithm == 'relation':
    learner = relation_network(
      filters=config.model.filters,
      hidden=config.metric.relation_hidden,
      conv_impl=config.model.conv_impl,
      batch_norm=bn,
    )
  else:
    embedding = conv4(config, 0)
    if config.algorithm == 'protonet':
      learner = metric.prototypical(
        embedding, distance=config.metric.distance, batch_norm=bn
      )
    elif config.algorithm == 'matching':
      learner = matching(
        embedding, full_context=config.metric.full_context, batch_norm=bn
      )
    else:
      learner = siamese(
        embedding, loss=config.metric.loss, margin=config.metric.margin, batch_norm=bn
      )
  extra = embedding_loss(config)
  if extra is not None:
    learner = metric.with_embedding_loss(
      learner, extra, config.metric.embedding_loss_weight
    )
  return learner


def _metric_learner(config) -> Learner:
  learner = metric_learner(config)
  estimator = metric.metric_estimator(
    learner,
    n_way=train_n_way(config),
    batching=config.batching,
    chunk_size=_chunk(config),
  )

  def accuracy(params, batch, n_way):
    return metric.evaluate_metric(
      learner,
      params,
      batch,
      n_way=n_way,
      batching=config.batching,
      chunk_size=_chunk(config),
    )['accuracy']

  return Learner(learner.init, estimator, accuracy)


def make_learner(config: ml_collections.ConfigDict) -> Learner:
  if config.algorithm in GRADIENT_ALGORITHMS:
    return _gradient_learner(config)
  return _metric_learner(config)


def check_metric_config(config: ml_collections.ConfigDict) -> None:
  """Raises ``ValueError`` naming the field for bad metric-learner settings."""
  choices = {
    'model.batch_norm': (config.model.batch_norm, jmeta.models.BATCH_NORM_MODES),
    'metric.embedding_loss': (config.metric.embedding_loss, EMBEDDING_LOSSES),
  }
  if config.algorithm == 'siamese':
    choices['metric.loss'] = (config.metric.loss, SIAMESE_LOSSES)
  if config.algorithm == 'protonet':
    choices['metric.distance'] = (config.metric.distance, metric.protonet.DISTANCES)
  for field, (value, allowed) in choices.items():
    if value not in allowed:
      raise ValueError(f'config.{field} = {value!r} is not one of {tuple(allowed)}.')


def make_gradient_probe(
  config: ml_collections.ConfigDict, learner: Learner
) -> Callable:
  """``probe(params, batch) -> {estimator: {metric: value}}``, jitted once.

  Compares the meta-gradients of first-order MAML, Reptile, iMAML and, with SGD
  inner steps, MAML++ at the start of its annealing (uniform multi-step loss, at
  second order and at first order; ``jmeta.maml_plus_plus_at`` at iteration 0)
  with exact second-order MAML on one batch (same inner loop): global cosine, norm ratio,
  relative error and per-layer cosines (``layer/<name>``), as
  ``jmeta.compare_estimators`` defines them, without its timing and memory.
  """
  # Plain SGD as a rate, so that MAML++ (SGD inner steps) joins the comparison.
  sgd = config.inner_optimizer == 'sgd'
  estimators = jmeta.default_estimators(
    learner.model,
    jmeta.losses.cross_entropy,
    inner_steps=config.inner_steps,
    inner_learning_rate=config.inner_learning_rate if sgd else None,
    inner_optimizer=None if sgd else inner_optimizer(config),
    imaml_regularization=config.compare.imaml_regularization,
    maml_plus_plus_anneal_iterations=config.compare.maml_plus_plus_anneal_iterations,
    batching=config.batching,
    chunk_size=_chunk(config),
  )

  @jax.jit
  def probe(params, batch):
    grads = {n: e.meta_gradient(params, batch).grads for n, e in estimators.items()}
    ref = grads.pop('maml')
    out = {}
    for name, g in grads.items():
      out[name] = {
        'cosine': jmeta.compare.tree_cosine(g, ref),
        'norm_ratio': jmeta.compare.tree_norm_ratio(g, ref),
        'relative_error': jmeta.compare.tree_relative_error(g, ref),
        **{f'layer/{k}': v for k, v in jmeta.compare.layer_cosines(g, ref).items()},
      }
    return out

  return probe
