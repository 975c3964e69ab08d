"""Unrolls of an optimizer on sampled problems, as ``lax.scan``s.

The optimizer is any ``optax.GradientTransformation``: a hand-designed one
(``optax.adam(0.1)``) or a learned rule with its meta-params
(``as_optimizer(rule, meta_params)``), differentiable in them. An ``InnerState`` is
one problem part-way through its unroll, so a truncated estimator can carry it from
one truncation to the next; with a leading axis it is a batch of problems (built by
``init_inner_states``, unrolled under ``jax.vmap``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from jmeta.learned_optimizers.tasks import TaskFamily, loss_at_step
from jmeta.validation import check_positive_int, check_steps


class InnerState(NamedTuple):
  """One inner problem part-way: its task, params, optimizer state and step count."""

  task: Any
  params: Any
  opt_state: Any
  step: jax.Array


def init_inner_state(
  optimizer: optax.GradientTransformation, family: TaskFamily, key: jax.Array
) -> InnerState:
  """A fresh problem of ``family`` drawn from ``key``, at step 0."""
  k_task, k_init = jax.random.split(key)
  task = family.sample(k_task)
  params = family.init(task, k_init)
  return InnerState(task, params, optimizer.init(params), jnp.zeros((), jnp.int32))


def init_inner_states(
  optimizer: optax.GradientTransformation,
  family: TaskFamily,
  key: jax.Array,
  num_tasks: int,
) -> InnerState:
  """``num_tasks`` fresh problems (a leading axis on every leaf), one key each."""
  num_tasks = check_positive_int(num_tasks, 'num_tasks')
  keys = jax.random.split(key, num_tasks)
  return jax.vmap(lambda k: init_inner_state(optimizer, family, k))(keys)


def unroll(
  optimizer: optax.GradientTransformation,
  family: TaskFamily,
  state: InnerState,
  steps: int,
  *,
  first_order: bool = False,
) -> tuple[InnerState, jax.Array]:
  """``steps`` updates of one problem: the new state and the loss after each update.

  Step t computes g = grad f_t(theta_t), theta_{t+1} = theta_t + optimizer(g) and
  records f_{t+1}(theta_{t+1}), so ``losses`` has shape ``(steps,)``; f_t is the
  family's ``loss_at_step`` (the same f at every t for a deterministic family, the
  loss on minibatch t for a stochastic one, so the recorded loss is on the
  minibatch the next step will see). With
  ``first_order=True`` the optimizee's gradients are constants when this is
  differentiated (Andrychowicz et al.'s d grad_t / d phi = 0, which avoids second
  derivatives of f); by default the derivative is exact.
  """
  steps = check_steps(steps)

  def step(state, _):
    def loss(p, t):
      return loss_at_step(family, state.task, p, t)

    grads = jax.grad(loss)(state.params, state.step)
    if first_order:
      grads = lax.stop_gradient(grads)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    t = state.step + 1
    return InnerState(state.task, params, opt_state, t), loss(params, t)

  return lax.scan(step, state, None, length=steps)


def final_states_and_curves(
  optimizer: optax.GradientTransformation,
  family: TaskFamily,
  key: jax.Array,
  *,
  steps: int,
  num_tasks: int,
) -> tuple[InnerState, jax.Array]:
  """``num_tasks`` problems drawn from ``key`` unrolled ``steps`` steps: their final
  states and their loss curves (``loss_curves``)."""
  states = init_inner_states(optimizer, family, key, num_tasks)

  def one(state):
    first = loss_at_step(family, state.task, state.params, state.step)
    state, losses = unroll(optimizer, family, state, steps)
    return state, jnp.concatenate([first[None], losses])

  return jax.vmap(one)(states)


def loss_curves(
  optimizer: optax.GradientTransformation,
  family: TaskFamily,
  key: jax.Array,
  *,
  steps: int,
  num_tasks: int,
) -> jax.Array:
  """Loss before and after each of ``steps`` updates, on ``num_tasks`` problems
  drawn from ``key``: shape ``(num_tasks, steps + 1)``. The same ``key`` gives the
  same problems and starting points whatever the optimizer."""
  return final_states_and_curves(
    optimizer, family, key, steps=steps, num_tasks=num_tasks
  )[1]
