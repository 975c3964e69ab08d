"""The one model interface: ``init(key, example_inputs) -> params`` and a pure ``apply``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

Params = Any  # any pytree of arrays
PRNGKey = jax.Array

# Batch-norm statistics come from an explicit, named mode, never from hidden state.
# ``transductive``: normalise with the mean and variance of the current call's batch,
# as MAML does (support and query are normalised separately, each with its own
# statistics).
TRANSDUCTIVE = 'transductive'
BATCH_NORM_MODES = (TRANSDUCTIVE,)


class Model(NamedTuple):
  """A model as two pure functions.

  Attributes:
    init: ``init(key, example_inputs) -> params``; ``example_inputs`` carries a
      leading batch axis and is used only for its shape.
    apply: ``apply(params, inputs, *, batch_norm='transductive') -> outputs`` for a
      batch of inputs. Models without batch norm accept and ignore the keyword.
  """

  init: Callable[[PRNGKey, jax.Array], Params]
  apply: Callable[..., jax.Array]


def check_batch_norm_mode(mode: str) -> str:
  """Returns ``mode`` if it is a known batch-norm mode, else raises ``ValueError``."""
  if mode not in BATCH_NORM_MODES:
    raise ValueError(
      f'unknown batch_norm mode {mode!r}; expected one of {BATCH_NORM_MODES}.'
    )
  return mode


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
