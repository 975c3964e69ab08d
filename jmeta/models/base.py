"""The one model interface: ``init(key, example_inputs) -> params`` and a pure ``apply``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jmeta.validation import check_choice

Params = Any  # any pytree of arrays
PRNGKey = jax.Array

# Batch-norm statistics come from an explicit, named mode, never from hidden state.
# ``transductive``: normalise with the mean and variance of the current call's batch,
# as MAML does (support and query are normalised separately, each with its own
# statistics). A metric learner that embeds support and query in one call lets the
# query statistics into the support embeddings in this mode.
# ``support``: the statistics come from the first ``num_support`` examples of the
# call (the support set) and normalise every example, so a query's output depends
# on the support set and on itself only: no query statistics leak anywhere.
TRANSDUCTIVE = 'transductive'
SUPPORT = 'support'
BATCH_NORM_MODES = (TRANSDUCTIVE, SUPPORT)


class Model(NamedTuple):
  """A model as two pure functions.

  Attributes:
    init: ``init(key, example_inputs) -> params``; ``example_inputs`` carries a
      leading batch axis and is used only for its shape.
    apply: ``apply(params, inputs, *, batch_norm='transductive', num_support=None)
      -> outputs`` for a batch of inputs. ``num_support`` is the number of leading
      examples that supply the statistics in ``'support'`` mode. Models without
      batch norm accept and ignore both keywords.
  """

  init: Callable[[PRNGKey, jax.Array], Params]
  apply: Callable[..., jax.Array]


def batch_norm_apply(
  forward: Callable[[Params, jax.Array, str, int | None], jax.Array],
) -> Callable[..., jax.Array]:
  """The ``Model.apply`` that calls ``forward(params, inputs, batch_norm, num_support)``."""

  def apply(
    params: Params,
    inputs: jax.Array,
    *,
    batch_norm: str = TRANSDUCTIVE,
    num_support: int | None = None,
  ) -> jax.Array:
    return forward(params, inputs, batch_norm, num_support)

  return apply


def population_batch_norm(model: Model, reference_inputs: jax.Array) -> Model:
  """``model`` whose batch norm always takes the statistics of ``reference_inputs``.

  apply(params, x) = model.apply(params, [r; x], batch_norm='support',
  num_support=len(r))[len(r):] for r = ``reference_inputs``: every layer normalises
  with the mean and variance of r's activations at ``params``, so an example's output
  depends on it and on r only. With r a large sample of the training data this is
  inference-mode batch norm with population statistics, what PyTorch's running
  averages (as in ProtoNet's reference code) approach once training has settled.
  The call's own ``batch_norm`` and ``num_support`` are ignored; each call also
  runs ``reference_inputs`` forward.
  """
  if reference_inputs.ndim < 1 or reference_inputs.shape[0] < 1:
    raise ValueError(
      'reference_inputs needs a leading batch axis with at least one example, got '
      f'shape {tuple(reference_inputs.shape)}.'
    )
  n = reference_inputs.shape[0]

  def apply(params: Params, inputs: jax.Array, **_ignored: Any) -> jax.Array:
    both = jnp.concatenate([reference_inputs.astype(inputs.dtype), inputs])
    return model.apply(params, both, batch_norm=SUPPORT, num_support=n)[n:]

  return Model(model.init, apply)


def check_batch_norm_mode(mode: str) -> str:
  """Returns ``mode`` if it is a known batch-norm mode, else raises ``ValueError``."""
  return check_choice(mode, BATCH_NORM_MODES, 'batch_norm mode')


def check_num_support(mode: str, num_support: int | None, batch: int) -> None:
  """Checks ``num_support`` against ``mode`` and the batch size (static ints)."""
  if mode == SUPPORT:
    if num_support is None or not 1 <= num_support <= batch:
      raise ValueError(
        f"batch_norm='support' needs num_support in [1, {batch}] (the number of "
        f'leading support examples), got {num_support!r}.'
      )
  elif num_support is not None:
    raise ValueError(
      f"num_support is only used with batch_norm='support', not {mode!r}; "
      'leave it unset.'
    )


def check_model_accepts(
  model: Model, params: Params, inputs: jax.Array, what: str = 'inputs'
) -> jax.ShapeDtypeStruct:
  """Abstractly evaluates ``model.apply`` on ``inputs``; raises a clear error if it fails.

  Uses ``jax.eval_shape``, so nothing is computed. Returns the output shape.
  """
  try:
    return jax.eval_shape(model.apply, params, inputs)
  except Exception as e:  # noqa: BLE001 -- re-raised with context below
    raise ValueError(
      f'model.apply does not accept {what} of shape {tuple(inputs.shape)} and dtype '
      f'{inputs.dtype}: {type(e).__name__}: {e}. Check that the task batch has '
      'the input shape the model was initialised for (per task: '
      '(examples, *features)).'
    ) from e
