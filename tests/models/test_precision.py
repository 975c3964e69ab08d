"""Mixed precision: bfloat16 compute under float32 params, against float32."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jmeta
from jmeta.models import mixed_precision


def _setup(n=10):
  model = jmeta.conv4(5, filters=8)
  x = jax.random.uniform(jax.random.key(0), (n, 28, 28, 1))
  y = jnp.arange(n) % 5
  params = model.init(jax.random.key(1), x)
  return model, params, x, y


def test_float32_compute_is_the_model_itself():
  model, params, x, _ = _setup()
  same = mixed_precision(model, jnp.float32)
  np.testing.assert_array_equal(same.apply(params, x), model.apply(params, x))


def test_bfloat16_computes_in_bfloat16_and_returns_float32():
  model, params, x, y = _setup()
  mixed = mixed_precision(model, jnp.bfloat16)
  # The convolutions and the head's matmul take bfloat16 operands.
  jaxpr = str(jax.make_jaxpr(mixed.apply)(params, x))
  assert 'bf16' in jaxpr and 'dot_general' in jaxpr
  out = mixed.apply(params, x)
  ref = model.apply(params, x)
  assert out.dtype == jnp.float32
  # bfloat16 keeps 8 significant bits: relative error of order 2^-8 per rounding.
  # Four blocks and a head, each rounding its operands once, bound the logits'
  # error by about 4 * 2^-8 of their scale (this batch: 2.1 * 2^-8, 0.0105 on
  # logits up to 1.31; computing in float32 would give 0).
  bound = 4 * 2**-8 * float(np.abs(ref).max())
  assert float(np.abs(out - ref).max()) < bound, (np.abs(out - ref).max(), bound)
  assert not np.array_equal(out, ref)

  def loss(p, m):
    return jmeta.losses.cross_entropy(m.apply(p, x), y)

  g_mixed = jax.grad(loss)(params, mixed)
  g_ref = jax.grad(loss)(params, model)
  assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(g_mixed))
  cosine = jmeta.compare.tree_cosine(g_mixed, g_ref)
  assert cosine > 0.98, cosine


def test_second_order_maml_through_bfloat16_points_like_float32():
  # Second derivatives through batch norm over 5 images amplify bfloat16's
  # rounding: the meta-gradient keeps its direction only roughly (cosine 0.86 on
  # this batch, with float32 accumulation; 0.82 without). An accuracy cost
  # measured, not a bound worth more.
  model, params, x, y = _setup()
  batch = jmeta.TaskBatch(x[None, :5], y[None, :5], x[None, 5:], y[None, 5:])
  grads = {}
  for name, m in (('f32', model), ('bf16', mixed_precision(model))):
    est = jmeta.maml(
      m, jmeta.losses.cross_entropy, inner_steps=2, inner_learning_rate=0.5
    )
    grads[name] = jax.jit(est.meta_gradient)(params, batch).grads
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads['bf16']))
  assert jmeta.compare.tree_cosine(grads['bf16'], grads['f32']) > 0.75


def test_products_accumulate_in_float32_under_bfloat16():
  # 4097 products of 1 + 2^-7 (exact in bfloat16) sum to 4129.0078125, exact in
  # float32; a bfloat16 result would be rounded to 4128 (its spacing there is 32).
  ones = jnp.full((1, 4097), 1 + 2**-7, jnp.bfloat16)
  w = jnp.ones((4097, 1), jnp.bfloat16)
  out = jmeta.models.layers.dense(ones, w, jnp.zeros(1, jnp.bfloat16))
  assert out.dtype == jnp.float32
  assert float(out[0, 0]) == 4097 * (1 + 2**-7)
  assert float((ones @ w)[0, 0]) != 4097 * (1 + 2**-7)  # plain bfloat16 rounds


def test_batch_norm_statistics_are_float32_under_bfloat16():
  # A large offset with a small spread: bfloat16 statistics would lose the spread
  # (its spacing at 256 is 2), float32 ones keep it.
  x = 256.0 + jax.random.normal(jax.random.key(0), (64, 4))
  out = jmeta.models.layers.batch_norm(
    x.astype(jnp.bfloat16), jnp.ones(4, jnp.bfloat16), jnp.zeros(4, jnp.bfloat16)
  )
  assert out.dtype == jnp.bfloat16
  ref = jmeta.models.layers.batch_norm(
    x.astype(jnp.bfloat16).astype(jnp.float32), jnp.ones(4), jnp.zeros(4)
  )
  np.testing.assert_allclose(out.astype(jnp.float32), ref, atol=0.05)


@pytest.mark.parametrize('bad', [jnp.int32, 'int8', 'not-a-dtype'])
def test_non_floating_compute_dtype_is_refused(bad):
  with pytest.raises(ValueError, match='compute_dtype must be a floating dtype'):
    mixed_precision(jmeta.conv4(5), bad)
