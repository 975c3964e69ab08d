"""TRPO's conjugate gradient, Hessian-vector products and trust-region step."""

import jax.numpy as jnp
import numpy as np
import pytest

from jmeta.rl import trpo


def test_conjugate_gradient_solves_a_known_system(x64):
  rng = np.random.default_rng(0)
  m = rng.normal(size=(6, 6))
  a = m @ m.T + 6 * np.eye(6)
  x_true = rng.normal(size=6)
  b = {'u': jnp.asarray(a @ x_true)[:4], 'v': jnp.asarray(a @ x_true)[4:]}

  def matvec(tree):
    x = jnp.concatenate([tree['u'], tree['v']])
    y = jnp.asarray(a) @ x
    return {'u': y[:4], 'v': y[4:]}

  x = trpo.conjugate_gradient(matvec, b, iterations=6)
  np.testing.assert_allclose(jnp.concatenate([x['u'], x['v']]), x_true, rtol=1e-9)
  # More iterations than dimensions: the converged solution stays put.
  x = trpo.conjugate_gradient(matvec, b, iterations=20)
  np.testing.assert_allclose(jnp.concatenate([x['u'], x['v']]), x_true, rtol=1e-9)


def test_hessian_vector_product_and_trust_region_step(x64):
  a = jnp.array([[3.0, 1.0], [1.0, 2.0]])
  kl = lambda p: 0.5 * p['w'] @ a @ p['w']  # noqa: E731 -- KL from p = 0
  params = {'w': jnp.zeros(2)}
  v = {'w': jnp.array([1.0, -2.0])}
  np.testing.assert_allclose(
    trpo.hessian_vector_product(kl, params, 0.1)(v)['w'], a @ v['w'] + 0.1 * v['w']
  )
  g = jnp.array([1.0, 0.5])
  surrogate = lambda p: g @ p['w']  # noqa: E731
  new, info = trpo.trpo_step(surrogate, kl, params, max_kl=0.02, damping=0.0)
  # The linear objective's maximiser on the ellipse 1/2 w^T A w = max_kl.
  direction = jnp.linalg.solve(a, g)
  expected = jnp.sqrt(2 * 0.02 / (direction @ a @ direction)) * direction
  np.testing.assert_allclose(new['w'], expected, rtol=1e-8)
  np.testing.assert_allclose(info['kl'], 0.02, rtol=1e-8)
  assert info['step_fraction'] == 1.0
  # A surrogate whose slope points up but which falls at every tried fraction of
  # the step (down to 0.5^14): the params stay put.
  new, info = trpo.trpo_step(
    lambda p: surrogate(p) - 1e9 * surrogate(p) ** 2, kl, params, max_kl=0.02
  )
  np.testing.assert_array_equal(new['w'], params['w'])
  assert info['step_fraction'] == 0.0


def test_policy_kls_are_zero_at_equal_params_and_match_sampling():
  import jax

  import jmeta
  from jmeta import rl

  obs = jax.random.normal(jax.random.key(0), (3, 2))
  for policy in (
    rl.gaussian_mlp_policy(2, 2, hidden_sizes=(4,)),
    rl.categorical_policy(jmeta.mlp((4,), 3), (2,)),
  ):
    old = policy.init(jax.random.key(1))
    new = policy.init(jax.random.key(2))
    np.testing.assert_allclose(policy.kl(old, old, obs), 0.0, atol=1e-6)
    keys = jax.random.split(jax.random.key(3), 20000)
    sample = jax.vmap(jax.vmap(policy.sample, (None, 0, None)), (None, None, 0))
    actions = sample(old, obs, keys)
    many = jnp.broadcast_to(obs, (len(keys), *obs.shape))
    sampled = jnp.mean(
      policy.log_prob(old, many, actions) - policy.log_prob(new, many, actions), axis=0
    )
    np.testing.assert_allclose(policy.kl(old, new, obs), sampled, rtol=0.05, atol=0.01)


def test_maml_trpo_step_stays_in_the_trust_region():
  import jax

  from jmeta import rl

  env = rl.navigation_2d(horizon=4)
  policy = rl.gaussian_mlp_policy(2, 2, hidden_sizes=(8,))
  params = policy.init(jax.random.key(0))
  step = jax.jit(rl.maml_trpo_step(env, policy, num_episodes=3, max_kl=0.01))
  batch = rl.sample_task_batch(env, jax.random.key(1), 2)
  new, info = step(params, batch)
  assert float(info['kl']) <= 0.01 * (1 + 1e-6)
  assert float(info['improvement']) >= 0.0
  moved = jax.tree.leaves(jax.tree.map(lambda a, b: jnp.any(a != b), new, params))
  assert any(moved) == (float(info['step_fraction']) > 0)
  with pytest.raises(ValueError, match="'dice_full' has no importance-weighted form"):
    rl.maml_trpo_step(env, policy, estimator='dice_full')


def test_maml_trpo_step_without_inner_steps_is_plain_trpo(x64):
  """inner_steps=0 (an oracle or single-task run): the step is trpo_step on the
  importance-weighted surrogate and the mean KL of the sampled episodes."""
  import jax

  from jmeta import rl

  env = rl.navigation_2d(horizon=5)
  policy = rl.gaussian_mlp_policy(2, 2, hidden_sizes=(8,))
  params = jax.tree.map(lambda x: x.astype(jnp.float64), policy.init(jax.random.key(0)))
  batch = rl.sample_task_batch(env, jax.random.key(1), 3)
  new, info = jax.jit(rl.maml_trpo_step(env, policy, num_episodes=4, inner_steps=0))(
    params, batch
  )

  loop = rl.adaptation(env, policy, inner_steps=0, num_episodes=4)
  task = lambda i: jax.tree.map(lambda x: x[i], batch.tasks)  # noqa: E731
  episodes = [loop.sample(params, task(i), batch.keys[i])[1] for i in range(3)]
  outer = jax.tree.map(lambda *xs: jnp.stack(xs), *episodes)
  advantages = jnp.stack([rl.estimate_advantages(o, loop.settings) for o in episodes])
  old = policy.log_prob(params, outer.observations, outer.actions)

  def surrogate(p):
    ratio = jnp.exp(policy.log_prob(p, outer.observations, outer.actions) - old)
    return jnp.mean(ratio * advantages * outer.valid)

  def kl(p):
    per_step = policy.kl(params, p, outer.observations)
    return jnp.sum(per_step * outer.valid) / jnp.sum(outer.valid)

  expected, expected_info = trpo.trpo_step(surrogate, kl, params)
  assert float(expected_info['step_fraction']) > 0  # the step moved
  # The environment steps in float32, jitted and vmapped there, eagerly here: the
  # sampled episodes agree to float32 rounding, not to float64's.
  for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(expected)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)
  np.testing.assert_allclose(info['kl'], expected_info['kl'], rtol=1e-5)
  np.testing.assert_allclose(info['return_before'], info['return_after'])


@pytest.mark.parametrize('estimator', ['dice', 'lvc', 'naive'])
def test_maml_trpo_metric_is_the_curvature_of_the_kl_it_bounds(
  estimator, x64, monkeypatch
):
  """The Hessian-vector products TRPO solves with are those of the sampled KL that
  its line search bounds: along the CG direction, s^T H s equals the central second
  difference of that KL. (Differentiating DiCE's or LVC's inner step twice adds
  score-function terms the sampled KL does not have; on half-cheetah they made the
  curvature 40x too large and every step far shorter than the bound.)"""
  import sys

  import jax
  import optax

  from jmeta import rl

  seen = {}

  def probe_step(surrogate, kl, params, **options):
    direction = trpo.conjugate_gradient(
      trpo.hessian_vector_product(kl, params, 0.01), jax.grad(surrogate)(params)
    )
    norm = jnp.sqrt(optax.tree.vdot(direction, direction))
    direction = jax.tree.map(lambda d: d / norm, direction)
    curvature = optax.tree.vdot(
      direction, trpo.hessian_vector_product(kl, params, 0.0)(direction)
    )
    eps = 1e-4
    at = lambda t: kl(jax.tree.map(lambda p, d: p + t * d, params, direction))  # noqa: E731
    seen['hvp'], seen['difference'] = (
      curvature,
      (at(eps) + at(-eps) - 2 * at(0.0)) / (eps**2),
    )
    return trpo.trpo_step(surrogate, kl, params, **options)

  monkeypatch.setattr(sys.modules['jmeta.rl.maml_rl'], 'trpo_step', probe_step)
  env = rl.navigation_2d(horizon=6)
  policy = rl.gaussian_mlp_policy(2, 2, hidden_sizes=(8,))
  # Random biases: at the init's zero biases and navigation's start at the origin,
  # ReLU pre-activations sit exactly at 0, where the inner gradient jumps.
  leaves, tree = jax.tree.flatten(policy.init(jax.random.key(0)))
  params = jax.tree.unflatten(
    tree,
    [
      leaf.astype(jnp.float64) + 0.1 * jax.random.normal(jax.random.key(i), leaf.shape)
      for i, leaf in enumerate(leaves)
    ],
  )
  step = rl.maml_trpo_step(env, policy, num_episodes=4, estimator=estimator)
  batch = rl.sample_task_batch(env, jax.random.key(1), 2)

  def run(params, batch):
    step(params, batch)
    return seen['hvp'], seen['difference']

  hvp, difference = jax.jit(run)(params, batch)
  assert float(difference) > 0
  np.testing.assert_allclose(hvp, difference, rtol=1e-3)
