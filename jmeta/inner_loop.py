"""Inner-loop adaptation: ``lax.scan`` over a static number of differentiable steps.

Each step is phi <- phi + u, where u comes from an optax transformation of
grad L_support(phi) (plain SGD gives u = -alpha * grad). Because optax updates are
pure functions, the whole loop can be differentiated (exact second-order MAML;
Finn et al., 2017).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypedDict

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from jmeta.inner_rules import inner_rule
from jmeta.models.base import Model, Params, check_model_accepts
from jmeta.validation import check_steps

LossFn = Callable[[jax.Array, jax.Array], jax.Array]


def inner_optimizer(
  optimizer: optax.GradientTransformation | None = None,
  learning_rate: float | jax.Array | None = None,
) -> optax.GradientTransformation:
  """The inner update rule: ``optimizer`` if given, else ``optax.sgd(learning_rate)``."""
  return inner_rule(optimizer, learning_rate).optimizer(None)


def check_batch_size(batch_size: Any, num_examples: int) -> int:
  """Returns ``batch_size`` as an ``int`` if 1 <= batch_size <= num_examples."""
  if (
    isinstance(batch_size, (bool, np.bool_))
    or not isinstance(batch_size, (int, np.integer))
    or batch_size < 1
  ):
    raise ValueError(
      f'the inner batch size must be a positive Python int, got {batch_size!r}.'
    )
  if batch_size > num_examples:
    raise ValueError(
      f'the inner batch size {batch_size} exceeds the {num_examples} support '
      'examples; use at most that many, or None for full-batch steps.'
    )
  return int(batch_size)


def minibatch_indices(
  key: jax.Array, num_examples: int, batch_size: int, steps: int
) -> jax.Array:
  """Indices ``(steps, batch_size)`` of minibatches drawn without replacement.

  Consecutive batches of a stream of fresh random permutations of
  ``range(num_examples)``, so each example is seen once per epoch and a batch may
  straddle two epochs: the inner-loop sampling of Reptile's reference code
  (Nichol et al., 2018). A pure function of ``key``.
  """
  steps = check_steps(steps)
  batch_size = check_batch_size(batch_size, num_examples)
  epochs = max(1, -(-steps * batch_size // num_examples))
  perms = jax.vmap(lambda k: jax.random.permutation(k, num_examples))(
    jax.random.split(key, epochs)
  )
  return perms.reshape(-1)[: steps * batch_size].reshape(steps, batch_size)


def data_key(inputs: jax.Array, seed: int = 0) -> jax.Array:
  """A PRNG key that is a pure function of ``inputs`` (their bits) and ``seed``.

  For stochastic inner loops whose caller holds no key (an estimator sees only
  params and tasks): every episode gets its own minibatch order, the same episode
  always the same one, and a task's order does not depend on which device or
  batch position it lands on. The hash is a position-weighted wrapping sum of the
  float32 bits (Knuth's multiplicative constant), not a cryptographic one.
  """
  bits = lax.bitcast_convert_type(jnp.asarray(inputs, jnp.float32), jnp.uint32)
  bits = bits.reshape(-1)
  weights = jnp.arange(bits.size, dtype=jnp.uint32) * jnp.uint32(2654435761)
  digest = jnp.sum(bits * (weights | jnp.uint32(1)), dtype=jnp.uint32)
  return jax.random.fold_in(jax.random.key(seed), digest)


def scan_inner_loop(
  objective: Callable[..., jax.Array],
  params: Params,
  *,
  steps: int,
  optimizer: optax.GradientTransformation,
  first_order: bool = False,
  observe: Callable[[Params], Any] | None = None,
  remat: bool = False,
  xs: Any = None,
  opt_state: optax.OptState | None = None,
) -> tuple[Params, jax.Array, Any, optax.OptState]:
  """Runs ``steps`` updates of ``optimizer`` on ``objective``.

  ``objective(params)``, or with ``xs`` (a pytree with a leading axis of length
  ``steps``, e.g. minibatch indices) step j minimises ``objective(params, xs[j])``.

  Returns the adapted params, the objective before each step (shape ``(steps,)``),
  ``observe(params)`` before each step, stacked (``None`` if not given), and the
  optimizer's state after the last step. The loop starts from ``opt_state``, by
  default ``optimizer.init(params)`` (a fresh state per task). With
  ``first_order=True`` the gradients are treated as constants (first-order MAML), so
  d phi / d theta = I. An ``optax.GradientTransformationExtraArgs`` optimizer also
  gets the objective's value at phi as ``update(..., value=...)``.

  With ``remat=True`` each step is wrapped in ``jax.checkpoint``: differentiating
  through the loop then stores only each step's input (phi_j and the optimizer
  state) and recomputes the step's forward and inner backward pass on the way back,
  so memory grows with ``steps`` times the size of the params instead of times the
  activations of a forward-and-backward pass. Same values, about one extra step of
  compute per step (Griewank & Walther, 2000; Chen et al., 2016).
  """

  def step(carry, x):
    phi, opt_state = carry
    value, grads = jax.value_and_grad(objective)(phi, *(() if xs is None else (x,)))
    if first_order:
      grads = lax.stop_gradient(grads)
    seen = observe(phi) if observe is not None else None
    extra = {}
    if isinstance(optimizer, optax.GradientTransformationExtraArgs):
      # optax's name for the objective's value; a rule that reads the loss (the
      # meta-LSTM) sees it as a constant under first order, like the gradient.
      extra['value'] = lax.stop_gradient(value) if first_order else value
    updates, opt_state = optimizer.update(grads, opt_state, phi, **extra)
    return (optax.apply_updates(phi, updates), opt_state), (value, seen)

  if remat:
    # The default policy saves nothing but the step's inputs. Inside a scan, CSE
    # cannot merge the recomputation with the forward pass, so prevent_cse=False
    # (as the jax.checkpoint docs advise) spares the optimisation barriers.
    step = jax.checkpoint(step, prevent_cse=False)

  if opt_state is None:
    opt_state = optimizer.init(params)
  (params, opt_state), (values, seen) = lax.scan(
    step, (params, opt_state), xs, length=steps
  )
  return params, values, seen, opt_state


def check_support(
  model: Model, params: Params, inputs: jax.Array, targets: jax.Array
) -> None:
  if inputs.ndim < 1 or inputs.shape[0] == 0:
    raise ValueError(
      f'the support set is empty (inputs of shape {inputs.shape}); '
      'adaptation needs at least one support example.'
    )
  if targets.shape[:1] != inputs.shape[:1]:
    raise ValueError(
      f'support inputs {inputs.shape} and targets {targets.shape} '
      'disagree on the number of examples.'
    )
  check_model_accepts(model, params, inputs, 'support inputs')


class InnerOptimizerOptions(TypedDict, total=False):
  """The inner optimizer of ``adapt`` (which has their defaults): ``optimizer``, by
  default SGD at ``learning_rate``. For the functions that adapt with it and hand
  them on (``jmeta.anil_adapt``, ``jmeta.imaml_adapt``, ``jmeta.evaluation``)."""

  learning_rate: float | jax.Array | None
  optimizer: optax.GradientTransformation | None


def adapt(
  model: Model,
  loss_fn: LossFn,
  params: Params,
  inputs: jax.Array,
  targets: jax.Array,
  *,
  steps: int,
  learning_rate: float | jax.Array | None = None,
  optimizer: optax.GradientTransformation | None = None,
  first_order: bool = False,
  remat: bool = False,
  batch_size: int | None = None,
  key: jax.Array | None = None,
) -> Params:
  """Adapts ``params`` to one task's support set by ``steps`` inner updates.

  phi_0 = params; phi_{j+1} = phi_j + optimizer(grad L(phi_j)), with
  L(phi) = loss_fn(model.apply(phi, inputs), targets). Plain SGD at
  ``learning_rate`` unless an optax ``optimizer`` is given. The result is
  differentiable with respect to ``params`` (and anything the optimizer closes
  over). Works for one task; ``jax.vmap`` it for a batch. ``remat=True`` recomputes
  each step when differentiated instead of storing it (see ``scan_inner_loop``).

  With ``batch_size``, step j takes L on minibatch j of ``minibatch_indices(key,
  ...)`` instead of the whole support set (Reptile's inner loop); ``key`` defaults
  to ``data_key(inputs)``.

  Example::

    phi = jmeta.adapt(model, jmeta.losses.mean_squared_error, params, x, y,
                      steps=5, learning_rate=0.01)
  """
  steps = check_steps(steps)
  check_support(model, params, inputs, targets)
  opt = inner_optimizer(optimizer, learning_rate)
  objective, xs = minibatch_objective(
    model, loss_fn, inputs, targets, steps=steps, batch_size=batch_size, key=key
  )
  adapted, _, _, _ = scan_inner_loop(
    objective,
    params,
    steps=steps,
    optimizer=opt,
    first_order=first_order,
    remat=remat,
    xs=xs,
  )
  return adapted


def minibatch_objective(
  model: Model,
  loss_fn: LossFn,
  inputs: jax.Array,
  targets: jax.Array,
  *,
  steps: int,
  batch_size: int | None,
  key: jax.Array | None = None,
) -> tuple[Callable[..., jax.Array], jax.Array | None]:
  """``(objective, xs)`` for ``scan_inner_loop``: full batch, or minibatches.

  With ``batch_size=None`` the objective is the loss on the whole support set and
  ``xs`` is None; otherwise ``xs`` holds ``minibatch_indices`` (from ``key``, by
  default ``data_key(inputs)``) and the objective takes the loss on one batch.
  """
  if batch_size is None:
    return lambda p: loss_fn(model.apply(p, inputs), targets), None
  inputs, targets = jnp.asarray(inputs), jnp.asarray(targets)
  key = data_key(inputs) if key is None else key
  xs = minibatch_indices(key, inputs.shape[0], batch_size, steps)
  return lambda p, i: loss_fn(model.apply(p, inputs[i]), targets[i]), xs


def adaptation_curve(
  model: Model,
  loss_fn: LossFn,
  params: Params,
  support: tuple[jax.Array, jax.Array],
  query: tuple[jax.Array, jax.Array],
  *,
  steps: int,
  learning_rate: float | jax.Array | None = None,
  optimizer: optax.GradientTransformation | None = None,
) -> jax.Array:
  """Query loss after 0, 1, ..., ``steps`` inner updates on the support set.

  Returns an array of shape ``(steps + 1,)``.
  """
  steps = check_steps(steps)
  check_support(model, params, *support)
  opt = inner_optimizer(optimizer, learning_rate)

  def query_loss(p):
    return loss_fn(model.apply(p, query[0]), query[1])

  adapted, _, seen, _ = scan_inner_loop(
    lambda p: loss_fn(model.apply(p, support[0]), support[1]),
    params,
    steps=steps,
    optimizer=opt,
    observe=query_loss,
  )
  return jnp.concatenate([seen, query_loss(adapted)[None]])
