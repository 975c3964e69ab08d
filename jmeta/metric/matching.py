"""Matching networks (Vinyals et al., 2016, "Matching Networks for One Shot Learning").

A query's class distribution is an attention-weighted vote of the support labels:

  P(y = k | x, S) = sum_i a(x, x_i) [y_i = k],  a(x, x_i) = softmax_i cos(f(x), g(x_i)).

Without full-context embeddings (FCE) f = g = the embedding network. With FCE (the
paper's Appendix A.2), each support embedding is read in the context of the whole
support set by a bidirectional LSTM, and each query embedding is refined by an
attention LSTM that reads the support set for K steps:

  g(x_i, S) = h_fwd_i + h_bwd_i + g'(x_i)                  (BiLSTM over g'(x_1..n))
  r_{k-1}   = sum_i softmax_i(h_{k-1}^T g(x_i, S)) g(x_i, S)
  h^_k, c_k = LSTM(f'(x), [h_{k-1}, r_{k-1}], c_{k-1})
  h_k       = h^_k + f'(x),     f(x, S) = h_K,

where f' = g' is the embedding network. The LSTMs are ``flax.linen.LSTMCell``s with
hidden size D (the embedding size), so the residual sums are defined. An LSTM whose
recurrent state is [h, r] computes its gates as W_x f' + W_h h + W_r r + b; the cell
here takes the input [f', r] and the state h, which is the same affine map with W_r
moved from the recurrent kernel to the input kernel. The recursion starts from
h^_0 = c_0 = 0, hence h_0 = f'(x) (as in the FCE code of Chen et al., 2019).
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from jmeta.losses import cross_entropy
from jmeta.metric.base import (
  MetricLearner,
  classification_loss,
  cosine_similarities,
  embed_episode,
)
from jmeta.models.base import SUPPORT, Model, check_batch_norm_mode


def _check_model(model) -> Model:
  if not (
    callable(getattr(model, 'init', None)) and callable(getattr(model, 'apply', None))
  ):
    raise ValueError(
      f'model must be a jmeta.Model (init, apply), got {type(model).__name__}.'
    )
  return model


def _check_processing_steps(processing_steps, full_context) -> int | None:
  if processing_steps is None:
    return None
  if (
    isinstance(processing_steps, bool)
    or not isinstance(processing_steps, int)
    or processing_steps < 1
  ):
    raise ValueError(
      f'processing_steps must be an int >= 1 or None, got {processing_steps!r}.'
    )
  if not full_context:
    raise ValueError(
      'processing_steps is the number of attention-LSTM steps of the full-context '
      'embeddings; it is only used with full_context=True.'
    )
  return processing_steps


def _flat(x: jax.Array) -> jax.Array:
  return x.reshape(x.shape[0], -1)


def _run_lstm(cell: nn.LSTMCell, params, inputs: jax.Array, reverse: bool):
  """Hidden states h_1..h_n of an LSTM from a zero state over ``inputs`` (n, D)."""
  zeros = jnp.zeros(inputs.shape[-1:], inputs.dtype)

  def step(carry, x):
    carry, h = cell.apply({'params': params}, carry, x)
    return carry, h

  _, hs = jax.lax.scan(step, (zeros, zeros), inputs, reverse=reverse)
  return hs


def _attention_read(h: jax.Array, memory: jax.Array) -> jax.Array:
  """r = sum_i softmax_i(h^T m_i) m_i for ``h`` (D,) and ``memory`` (n, D)."""
  return jax.nn.softmax(memory @ h) @ memory


def matching(
  model: Model,
  *,
  full_context: bool = False,
  processing_steps: int | None = None,
  batch_norm: str = SUPPORT,
) -> MetricLearner:
  """Matching networks (Vinyals et al., 2016): cosine attention over the support set.

  P(y = k | x, S) = sum_i softmax_i(cos(f(x), g(x_i))) [y_i = k]. ``logits``
  returns log P, floored at the dtype's smallest normal number so that it stays
  finite for a class absent from the support set; since P sums to one,
  log_softmax(log P) = log P, so the cross-entropy of these logits (the loss) is
  the negative log-likelihood of the query labels. As in the paper the attention is
  a softmax over plain cosines, with no learned temperature.

  ``model`` is the embedding network f' = g' (e.g. ``conv4(0, variant='maxpool')``),
  its outputs flattened to D features. ``full_context=True`` adds the full-context
  embeddings of the module docstring: a bidirectional LSTM over the support set, in
  the order the support set is given (so the result depends on that order), and an
  attention LSTM run on each query on its own (``vmap``), so no query sees another.
  ``processing_steps`` is its number of steps K; ``None`` means one step per support
  example (K = n, as in Chen et al., 2019), which changes with the episode size.

  ``batch_norm`` is the embedding's batch-norm mode (see ``embed_episode``).
  ``params`` is ``{'embedding': ...}``, plus ``'fce': {'forward', 'backward',
  'attention'}`` (flax ``LSTMCell`` params) with ``full_context``. ``embed``
  returns the embeddings the cosines compare: the model's outputs without FCE, g(S)
  and f(Q, S) (flattened) with it.
  """
  _check_model(model)
  if not isinstance(full_context, bool):
    raise ValueError(f'full_context must be a bool, got {full_context!r}.')
  _check_processing_steps(processing_steps, full_context)
  check_batch_norm_mode(batch_norm)
  embed_model = embed_episode(model, batch_norm)

  def cell(features: int, dtype) -> nn.LSTMCell:
    return nn.LSTMCell(features=features, param_dtype=dtype)

  def context_embeddings(fce, support: jax.Array, query: jax.Array):
    d = support.shape[-1]
    lstm = cell(d, support.dtype)
    fwd = _run_lstm(lstm, fce['forward'], support, reverse=False)
    bwd = _run_lstm(lstm, fce['backward'], support, reverse=True)
    g = fwd + bwd + support
    steps = support.shape[0] if processing_steps is None else processing_steps

    def attend(f):
      def step(carry, _):
        c, h = carry
        r = _attention_read(h, g)
        (c, h_hat), _ = lstm.apply(
          {'params': fce['attention']}, (c, h), jnp.concatenate([f, r])
        )
        return (c, h_hat + f), None

      (_, h), _ = jax.lax.scan(step, (jnp.zeros_like(f), f), None, length=steps)
      return h

    # One attention LSTM per query, so no query's embedding depends on another's.
    return g, jax.vmap(attend)(query)

  def embed(params, support_inputs, query_inputs):
    support, query = embed_model(params['embedding'], support_inputs, query_inputs)
    if not full_context:
      return support, query
    return context_embeddings(params['fce'], _flat(support), _flat(query))

  def logits(params, support_inputs, support_labels, query_inputs, n_way: int):
    support, query = embed(params, support_inputs, query_inputs)
    attention = jax.nn.softmax(cosine_similarities(_flat(query), _flat(support)), -1)
    probs = attention @ jax.nn.one_hot(support_labels, n_way, dtype=attention.dtype)
    return jnp.log(jnp.maximum(probs, jnp.finfo(probs.dtype).tiny))

  def init(key: jax.Array, example_inputs: jax.Array) -> dict:
    embedding_key, *keys = jax.random.split(key, 4)
    embedding = model.init(embedding_key, example_inputs)
    if not full_context:
      return {'embedding': embedding}
    out = jax.eval_shape(lambda p, x: model.apply(p, x), embedding, example_inputs)
    d = math.prod(out.shape[1:])
    lstm = cell(d, out.dtype)
    zeros = jnp.zeros((d,), out.dtype)
    fce = {}
    for name, k, width in zip(
      ('forward', 'backward', 'attention'), keys, (d, d, 2 * d)
    ):
      x = jnp.zeros((width,), out.dtype)
      fce[name] = lstm.init(k, (zeros, zeros), x)['params']
    return {'embedding': embedding, 'fce': fce}

  return MetricLearner(
    'matching', init, embed, logits, classification_loss(logits, cross_entropy)
  )
