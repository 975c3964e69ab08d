"""A memory-augmented network on N-way K-shot episodes (Santoro et al., 2016).

The MANN of ``jmeta.memory.mann`` answers the standard few-shot episodes of the other
learners: the support set is one sequence through the model, step i reading
``[x_i, one_hot(y_i)]`` (the flattened image with its label, both known, so the
controller can write their binding to memory), and each query then takes one step
from the state the support set left, reading ``[x_q, 0]`` (no label); that step's
output is the query's logits. Every query starts from the same state (a ``vmap``),
so queries are answered independently of each other and of their order, as in every
other learner's episode. The support set is read in the episode's order (jmeta's
episodes are class-major). The model has ``num_classes`` outputs, so it answers
``num_classes``-way episodes only. Training is the metric learners' episode loss:
cross-entropy on the queries, through ``metric_estimator``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

from jmeta.losses import cross_entropy
from jmeta.memory import mann
from jmeta.metric.base import MetricLearner, classification_loss
from jmeta.models.base import Params, PRNGKey
from jmeta.validation import check_n_way


def mann_learner(
  num_classes: int,
  *,
  memory_slots: int = 128,
  memory_width: int = 40,
  controller_size: int = 200,
  read_heads: int = 4,
  gamma: float = 0.95,
) -> MetricLearner:
  """The LRUA MANN (``jmeta.memory.mann``, the paper's sizes by default) as a
  learner of ``num_classes``-way episodes of images; see the module docstring."""
  num_classes = check_n_way(num_classes)
  model = mann(
    num_classes,
    memory_slots=memory_slots,
    memory_width=memory_width,
    controller_size=controller_size,
    read_heads=read_heads,
    gamma=gamma,
  )

  def init(key: PRNGKey, example_inputs: jax.Array) -> Params:
    features = math.prod(example_inputs.shape[1:]) + num_classes
    return model.init(key, jnp.zeros((1, features), jnp.float32))

  def logits(params, support_inputs, support_labels, query_inputs, n_way: int):
    if n_way != num_classes:
      raise ValueError(
        f'this MANN has {num_classes} outputs, so it answers {num_classes}-way '
        f'episodes only, not {n_way}-way ones; build one with num_classes={n_way}.'
      )
    labels = jax.nn.one_hot(support_labels, n_way, dtype=support_inputs.dtype)
    support = jnp.concatenate(
      [support_inputs.reshape(support_inputs.shape[0], -1), labels], axis=-1
    )

    def read(state, x):
      state, _ = model.step(params, state, x)
      return state, None

    state, _ = lax.scan(read, model.initial_state(params), support)
    queries = query_inputs.reshape(query_inputs.shape[0], -1)
    queries = jnp.concatenate(
      [queries, jnp.zeros((queries.shape[0], n_way), queries.dtype)], axis=-1
    )
    _, out = jax.vmap(lambda x: model.step(params, state, x))(queries)
    return out

  loss = classification_loss(logits, cross_entropy)
  return MetricLearner('mann', init, None, logits, loss)
