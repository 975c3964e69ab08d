"""Meta-gradients of MAML-RL on a tiny MDP, in expectation, against closed forms.

Two states, two actions, two steps, deterministic rewards: every episode and its
probability can be listed (8 episodes), so an estimator's expectation is a finite
sum, computed in float64. The closed forms are the expected return
``J(theta) = sum_tau p(tau; theta) R(tau)`` and the expected post-adaptation return
``F(theta) = E_{tau_1, tau_2 ~ pi_theta}[J(theta + alpha g(tau_1, tau_2; theta))]``
(one inner REINFORCE step on two episodes, with the linear baseline and normalised
advantages), differentiated by JAX.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jmeta
from jmeta import rl

LEARNING_RATE = 0.5
HORIZON = 2
INNER = rl.AdvantageSettings(
  gamma=1.0, gae_lambda=1.0, baseline='linear', normalize=True
)
OUTER = rl.AdvantageSettings(
  gamma=1.0, gae_lambda=1.0, baseline='none', normalize=False
)
REWARDS = np.array([[1.0, -0.5], [0.3, 2.0]])
TRANSITIONS = np.array([[[0.7, 0.3], [0.2, 0.8]], [[0.6, 0.4], [0.1, 0.9]]])


@pytest.fixture
def problem(x64):
  policy = rl.categorical_policy(jmeta.mlp((), 2), (2,))
  params = policy.init(jax.random.key(0))
  params = jax.tree.map(
    lambda x: (
      jnp.asarray(x, jnp.float64)
      + 0.5 * jax.random.normal(jax.random.key(1), x.shape, jnp.float64)
    ),
    params,
  )
  episodes = []
  for a0, s1, a1 in itertools.product(range(2), range(2), range(2)):
    episodes.append(
      rl.Trajectory(
        observations=jax.nn.one_hot(jnp.array([0, s1]), 2, dtype=jnp.float64),
        actions=jnp.array([a0, a1], jnp.int32),
        rewards=jnp.array([REWARDS[0, a0], REWARDS[s1, a1]]),
        valid=jnp.ones(2, jnp.float64),
      )
    )
  episodes = jax.tree.map(lambda *xs: jnp.stack(xs), *episodes)  # (8, T, ...)
  transition = jnp.array(
    [
      TRANSITIONS[0, a0, s1]
      for a0, s1, _ in itertools.product(range(2), range(2), range(2))
    ]
  )
  return policy, params, episodes, transition


def probabilities(policy, params, episodes, transition):
  """p(tau; params) of each of the 8 episodes."""
  log_pi = policy.log_prob(params, episodes.observations, episodes.actions)
  return jnp.exp(jnp.sum(log_pi, axis=-1)) * transition


def expected_return(policy, params, episodes, transition):
  p = probabilities(policy, params, episodes, transition)
  return jnp.sum(p * jnp.sum(episodes.rewards, axis=-1))


def inner_pairs(episodes):
  """Every ordered pair of episodes as one inner batch: (64, 1 step, 2, T, ...)."""
  i, j = np.meshgrid(np.arange(8), np.arange(8), indexing='ij')
  i, j = i.reshape(-1), j.reshape(-1)
  pairs = jax.tree.map(lambda x: jnp.stack([x[i], x[j]], axis=1), episodes)
  return jax.tree.map(lambda x: x[:, None], pairs), i, j


def test_probabilities_sum_to_one(problem):
  policy, params, episodes, transition = problem
  np.testing.assert_allclose(
    probabilities(policy, params, episodes, transition).sum(), 1.0, rtol=1e-14
  )


def test_surrogate_derivatives_in_expectation(problem):
  """E[grad L] = grad J / T for all three; E[hess L_dice] = hess J / T exactly,
  and the naive surrogate's Hessian is far from it."""
  policy, params, episodes, transition = problem
  flat, unravel = jax.flatten_util.ravel_pytree(params)
  j = lambda f: expected_return(policy, unravel(f), episodes, transition)  # noqa: E731
  p = probabilities(policy, params, episodes, transition)
  togo = rl.discounted_returns(episodes.rewards, episodes.valid, 1.0)

  def expectation(surrogate, order):
    def one(f, ep, a):
      lp = policy.log_prob(unravel(f), ep.observations, ep.actions)
      return surrogate(lp[None], a[None], ep.valid[None])

    d = jax.grad(one) if order == 1 else jax.hessian(one)
    values = jax.vmap(d, (None, 0, 0))(flat, episodes, togo)
    return jnp.tensordot(p, values, axes=1)

  expectation = jax.jit(expectation, static_argnums=(0, 1))

  grad_j = jax.jit(jax.grad(j))(flat) / HORIZON
  hess_j = jax.jit(jax.hessian(j))(flat) / HORIZON
  for surrogate in (rl.naive_surrogate, rl.dice_surrogate, rl.lvc_surrogate):
    np.testing.assert_allclose(
      expectation(surrogate, 1), grad_j, rtol=1e-12, atol=1e-14
    )
  np.testing.assert_allclose(
    expectation(rl.dice_surrogate, 2), hess_j, rtol=1e-12, atol=1e-14
  )
  for surrogate in (rl.naive_surrogate, rl.lvc_surrogate):
    error = np.linalg.norm(expectation(surrogate, 2) - hess_j)
    assert error > 0.1 * np.linalg.norm(hess_j), surrogate.__name__


def test_dice_full_meta_gradient_is_exact(problem):
  """E[grad of dice_full's surrogate] = grad F / T to float64 precision; the naive,
  DiCE (formulation II) and first-order estimators are far from it: the naive one
  misses the whole second-order term here (its error is 100% of that term), the
  DiCE one estimates the other formulation's (the Hessian of J, not the
  correlation of the inner samples with J(theta')), which differs at this
  learning rate."""
  policy, params, episodes, transition = problem
  inner, i, j = inner_pairs(episodes)

  def adapted(theta, batch):
    batch = jax.tree.map(lambda x: x[0], batch)
    a = rl.estimate_advantages(batch, INNER)
    return rl.policy_gradient_step(policy, theta, batch, a, LEARNING_RATE)

  def post_adaptation_return(theta):
    p = probabilities(policy, theta, episodes, transition)
    returns = jax.vmap(
      lambda b: expected_return(policy, adapted(theta, b), episodes, transition)
    )(inner)
    return jnp.sum(p[i] * p[j] * returns)

  exact = jax.jit(jax.grad(post_adaptation_return))(params)
  exact_flat = jax.flatten_util.ravel_pytree(exact)[0] / HORIZON

  outer = jax.tree.map(lambda x: x[:, None], episodes)  # (8, 1 episode, T, ...)

  @jax.jit
  def expectations(params):
    """Each estimator's expected meta-gradient, in one compiled program."""
    p = probabilities(policy, params, episodes, transition)
    # The outer episode's probability under the adapted params of each inner batch.
    weights_out = jax.vmap(
      lambda b: probabilities(policy, adapted(params, b), episodes, transition)
    )(inner)  # (64, 8)
    weights = (p[i] * p[j])[:, None] * weights_out

    def expectation(estimator):
      def one(b, o):
        return jax.grad(
          lambda t: rl.meta_surrogate(
            estimator,
            policy,
            t,
            b,
            o,
            learning_rate=LEARNING_RATE,
            settings=INNER,
            outer_settings=OUTER,
          )
        )(params)

      grads = jax.vmap(jax.vmap(one, (None, 0)), (0, None))(inner, outer)
      mean = jax.tree.map(lambda g: jnp.tensordot(weights, g, axes=2), grads)
      return jax.flatten_util.ravel_pytree(mean)[0]

    return {e: expectation(e) for e in ('dice_full', 'first_order', 'naive', 'dice')}

  out = expectations(params)
  np.testing.assert_allclose(out['dice_full'], exact_flat, rtol=1e-11, atol=1e-14)
  # What each estimator adds to the first-order one, against the exact addition.
  exact_term = exact_flat - out['first_order']
  assert np.linalg.norm(exact_term) > 0.01 * np.linalg.norm(exact_flat)
  for estimator in ('naive', 'dice'):
    error = np.linalg.norm(out[estimator] - out['first_order'] - exact_term)
    assert error > 0.2 * np.linalg.norm(exact_term), estimator
