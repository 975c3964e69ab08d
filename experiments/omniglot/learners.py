"""Builds the learner a config names: config to factory, with no per-algorithm code.

Gradient-based learners (``jmeta.LEARNERS``: MAML, first-order MAML, Reptile, iMAML,
Meta-SGD, ANIL, MAML++) adapt a Conv4 classifier; metric learners
(``jmeta.metric.METRIC_LEARNERS``: ProtoNet, Matching, Relation, Siamese, Meta
Networks) score queries against the support set. Each factory receives the
config's options that its signature names; an option the config sets but the
factory does not take is refused, naming the field.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import ml_collections
import optax

import jmeta
from jmeta import metric

GRADIENT_ALGORITHMS = tuple(sorted(jmeta.LEARNERS))
METRIC_ALGORITHMS = tuple(sorted(metric.METRIC_LEARNERS))
ALGORITHMS = GRADIENT_ALGORITHMS + METRIC_ALGORITHMS
EMBEDDING_LOSSES = ('none', 'center', 'triplet_batch_hard', 'triplet_semi_hard')


class Learner(NamedTuple):
  """What the training loop needs from an algorithm.

  Attributes:
    init: ``init(key, example_inputs) -> meta_params``.
    estimator: the ``jmeta.MetaLearner`` of the training episodes.
    accuracy: ``accuracy(meta_params, batch, n_way) -> per-task query accuracy``
      after the learner's test-time prediction, for ``n_way``-way episodes.
    metrics: ``metrics(meta_params, batch, n_way) -> {'accuracy', 'loss'}``, each
      per task: the accuracy, and the query cross-entropy of the predictions taken
      as logits (what ProtoNet's reference code early-stops on).
    model: the classifier that gradient-based learners adapt (None for metric
      learners).
  """

  init: Callable
  estimator: jmeta.MetaLearner
  accuracy: Callable[[Any, jmeta.TaskBatch, int], jax.Array]
  metrics: Callable[[Any, jmeta.TaskBatch, int], dict[str, jax.Array]]
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
  """The inner minibatch (config.inner_batch_size, config.eval.inner_batch_size);
  None (0 in the config) for full-batch inner steps on the support set."""
  return (config if train else config.eval).get('inner_batch_size', 0) or None


def check_inner_batch_sizes(config) -> None:
  """Raises ``ValueError`` naming the field for an inner batch the support can't fill."""
  # The smallest test support set: the setting's K or an extra one.
  test_shots = min((config.data.k_shot, *config.eval.get('extra_k_shots', ())))
  for field, train, shots in (
    ('inner_batch_size', True, train_k_shot(config)),
    ('eval.inner_batch_size', False, test_shots),
  ):
    size, support = inner_batch_size(config, train=train), config.data.n_way * shots
    if size is not None and (size < 0 or size > support):
      raise ValueError(
        f'config.{field} = {size} must be between 1 and the {support} support '
        f'images of a {"training" if train else "test"} episode ({config.data.n_way} '
        f'ways x {shots} shots), or 0 for full-batch steps.'
      )


# config.inner_adapts -> the leaf selector of maml(..., adapts=...).
INNER_ADAPTS = {
  'all': None,
  'all_but_batch_norm_offsets': jmeta.models.excluding_batch_norm_offsets,
}


def _chunk(config) -> int | None:
  return config.chunk_size if config.batching == 'chunked' else None


def conv4(config, num_classes: int) -> jmeta.Model:
  """The config's Conv4, in its compute dtype."""
  model = jmeta.conv4(
    num_classes,
    variant=config.model.variant,
    filters=config.model.filters,
    conv_impl=config.model.conv_impl,
    batch_norm_scale=config.model.batch_norm_scale,
    batch_norm_eps=config.model.batch_norm_eps,
    head_init=config.model.head_init,
    block_init=config.model.block_init,
  )
  dtype = config.model.get('compute_dtype', 'float32')
  return model if dtype == 'float32' else jmeta.models.mixed_precision(model, dtype)


def call_with_options(
  factory: Callable, required: dict, optional: dict, what: str, *args
) -> Any:
  """``factory(*args, **options)`` with the options its signature names.

  ``required`` maps option -> (value, config field): the factory must take each
  one. ``optional`` maps option -> (value, config field, neutral value): one the
  factory does not take may only hold its neutral value (the field is unused);
  any other value raises ``ValueError`` naming the field.
  """
  accepted = inspect.signature(factory).parameters
  options = {}
  for name, (value, field) in required.items():
    if name not in accepted:
      raise ValueError(f'config.{field} does not apply to {what}; remove it.')
    options[name] = value
  fields = {}
  for name, (value, field, neutral) in optional.items():
    if name in accepted:
      options[name] = value
      fields[field] = value
    elif value != neutral:
      raise ValueError(
        f'config.{field} = {value!r} does not apply to {what}, which takes no '
        f'{name}; leave it at {neutral!r}.'
      )
  fields.update({field: value for value, field in required.values()})
  try:
    return factory(*args, **options)
  except ValueError as error:
    # The factory names its keyword arguments; say which config fields set them.
    given = ', '.join(
      f'config.{f} = {v!r}'
      for f, v in fields.items()
      if isinstance(v, (bool, int, float, str))
    )
    raise ValueError(f'{what} from {given}: {error}') from error


def takes_option(config, option: str) -> bool:
  """Whether the factory of ``config.algorithm`` takes the keyword ``option``."""
  factory = (
    jmeta.LEARNERS if config.algorithm in jmeta.LEARNERS else metric.METRIC_LEARNERS
  )[config.algorithm]
  return option in inspect.signature(factory).parameters


def has_class_head(config) -> bool:
  """Whether the learner's params hold a head over the episode's classes, so that
  one run trains and tests one number of ways: every gradient-based learner (its
  Conv4 classifier), and a learner whose factory takes ``num_classes``."""
  return config.algorithm in jmeta.LEARNERS or takes_option(config, 'num_classes')


def own_options(config) -> dict:
  """The algorithm's own block (``config.imaml``, ``config.mann``, ...) as
  ``call_with_options``'s required options: option -> (value, config field)."""
  block = config.get(config.algorithm, ml_collections.ConfigDict()).to_dict()
  return {k: (v, f'{config.algorithm}.{k}') for k, v in block.items()}


def _gradient_learner(config, n_way: int) -> tuple[Callable, jmeta.MetaLearner, Any]:
  model = conv4(config, n_way)
  factory = jmeta.LEARNERS[config.algorithm]
  accepted = inspect.signature(factory).parameters
  # Plain SGD goes in as a rate where the factory takes one (iMAML checks that its
  # proximal inner loop can converge at that rate); optax.sgd(rate) is the same rule.
  by_rate = config.inner_optimizer == 'sgd' and 'inner_learning_rate' in accepted
  if 'inner_optimizer' in accepted and not by_rate:
    rule = {'inner_optimizer': (inner_optimizer(config), 'inner_optimizer', None)}
  elif by_rate:
    rule = {
      'inner_learning_rate': (config.inner_learning_rate, 'inner_learning_rate', None)
    }
  else:
    # A factory without an optimizer option (Meta-SGD, MAML++) steps by SGD.
    rule = {
      'inner_learning_rate': (config.inner_learning_rate, 'inner_learning_rate', None),
      'inner_optimizer': (config.inner_optimizer, 'inner_optimizer', 'sgd'),
    }
  learner = call_with_options(
    factory,
    own_options(config),
    {
      **rule,
      'inner_steps': (config.inner_steps, 'inner_steps', None),
      'test_steps': (config.eval.inner_steps, 'eval.inner_steps', None),
      'inner_batch_size': (
        inner_batch_size(config, train=True),
        'inner_batch_size',
        None,
      ),
      'test_batch_size': (
        inner_batch_size(config, train=False),
        'eval.inner_batch_size',
        None,
      ),
      'adapts': (INNER_ADAPTS[config.inner_adapts], 'inner_adapts', None),
      'remat': (config.get('remat', False), 'remat', False),
      'persistent_inner_state': (
        config.get('persistent_inner_state', False),
        'persistent_inner_state',
        False,
      ),
      'batching': (config.batching, 'batching', None),
      'chunk_size': (_chunk(config), 'chunk_size', None),
      'metrics_fn': (jmeta.losses.classification_metrics, 'metrics_fn', None),
    },
    f'{config.algorithm} ({factory.__module__}.{factory.__name__})',
    model,
    jmeta.losses.cross_entropy,
  )

  def init(key, example_inputs):
    return learner.init(model.init(key, example_inputs))

  return init, learner, model


def embedding_loss(config) -> Callable | None:
  name, margin = config.metric.embedding_loss, config.metric.margin
  if name == 'none':
    return None
  if name == 'center':
    return metric.center_loss
  if name == 'triplet_batch_hard':
    return functools.partial(metric.batch_hard_triplet_loss, margin=margin)
  return functools.partial(metric.batch_semi_hard_triplet_loss, margin=margin)


def metric_learner(
  config, n_way: int, model: jmeta.Model | None = None
) -> metric.MetricLearner:
  """The ``MetricLearner`` named by ``config.algorithm``, for ``n_way``-way episodes
  (read only by a learner with a class head, ``num_classes``), embedding with
  ``model`` if given, else with the config's Conv4."""
  factory = metric.METRIC_LEARNERS[config.algorithm]
  options = config.metric
  # A learner with a network of its own (Relation) takes no embedding model.
  if model is None and takes_option(config, 'model'):
    model = conv4(config, 0)
  learner = call_with_options(
    factory,
    own_options(config),
    {
      'model': (model, 'model', model),
      **{
        name: (value, field, value)
        for name, value, field in (
          ('batch_norm', config.model.batch_norm, 'model.batch_norm'),
          ('filters', config.model.filters, 'model.filters'),
          ('conv_impl', config.model.conv_impl, 'model.conv_impl'),
        )
      },
      'distance': (options.distance, 'metric.distance', 'squared_euclidean'),
      'full_context': (options.full_context, 'metric.full_context', False),
      'hidden': (options.relation_hidden, 'metric.relation_hidden', 8),
      'loss': (options.loss, 'metric.loss', 'bce'),
      'margin': (options.margin, 'metric.margin', options.margin),
      'num_classes': (n_way, 'data.n_way', n_way),
    },
    config.algorithm,
  )
  extra = embedding_loss(config)
  if extra is not None:
    learner = metric.with_embedding_loss(learner, extra, options.embedding_loss_weight)
  return learner


def _metric_learner(config, n_way: int) -> tuple[Callable, jmeta.MetaLearner, None]:
  learner = metric_learner(config, n_way)
  estimator = metric.metric_estimator(
    learner, n_way=n_way, batching=config.batching, chunk_size=_chunk(config)
  )
  return learner.init, estimator, None


def build(config, n_way: int) -> tuple[Callable, jmeta.MetaLearner, Any]:
  """(init, meta-learner, adapted model or None) for ``n_way``-way episodes."""
  if config.algorithm in jmeta.LEARNERS:
    return _gradient_learner(config, n_way)
  return _metric_learner(config, n_way)


def eval_batching(config) -> str:
  """How test episodes are batched: ``config.eval.batching``, or the training
  batching where it is empty (the configs before the field existed)."""
  return config.eval.get('batching', '') or config.batching


def make_learner(config: ml_collections.ConfigDict) -> Learner:
  init, learner, model = build(config, train_n_way(config))
  tested = {train_n_way(config): learner}

  def metrics(meta_params, batch, n_way):
    if n_way not in tested:
      tested[n_way] = build(config, n_way)[1]
    return jmeta.evaluate(
      tested[n_way],
      meta_params,
      batch,
      _accuracy_and_loss,
      batching=eval_batching(config),
      chunk_size=_chunk(config),
    )

  def accuracy(meta_params, batch, n_way):
    return metrics(meta_params, batch, n_way)['accuracy']

  return Learner(init, learner, accuracy, metrics, model)


def _accuracy_and_loss(logits: jax.Array, labels: jax.Array) -> dict[str, jax.Array]:
  return {
    'accuracy': jmeta.losses.accuracy(logits, labels),
    'loss': jmeta.losses.cross_entropy(logits, labels),
  }


def check_metric_config(config: ml_collections.ConfigDict) -> None:
  """Raises ``ValueError`` naming the field for bad metric-learner settings."""
  choices = {
    'model.batch_norm': (config.model.batch_norm, jmeta.models.BATCH_NORM_MODES),
    'metric.embedding_loss': (config.metric.embedding_loss, EMBEDDING_LOSSES),
  }
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
        'cosine': jmeta.tree_cosine(g, ref),
        'norm_ratio': jmeta.tree_norm_ratio(g, ref),
        'relative_error': jmeta.tree_relative_error(g, ref),
        **{f'layer/{k}': v for k, v in jmeta.layer_cosines(g, ref).items()},
      }
    return out

  return probe
