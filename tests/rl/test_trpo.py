"""TRPO's conjugate gradient, Hessian-vector products and trust-region step."""

import jax.numpy as jnp
import numpy as np

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
