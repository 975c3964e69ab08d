"""Conv4 and its layers: both convolution implementations, shapes, batch norm."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jmeta
from jmeta.models import layers


def numpy_conv_same(x, w, b, stride):
  """'SAME'-padded NHWC/HWIO cross-correlation written with loops."""
  n, h, wd, _ = x.shape
  kh, kw, _, cout = w.shape
  oh, ow = -(-h // stride), -(-wd // stride)
  pad_h = max((oh - 1) * stride + kh - h, 0)
  pad_w = max((ow - 1) * stride + kw - wd, 0)
  xp = np.pad(
    x,
    (
      (0, 0),
      (pad_h // 2, pad_h - pad_h // 2),
      (pad_w // 2, pad_w - pad_w // 2),
      (0, 0),
    ),
  )
  out = np.zeros((n, oh, ow, cout))
  for i in range(oh):
    for j in range(ow):
      patch = xp[:, i * stride : i * stride + kh, j * stride : j * stride + kw, :]
      out[:, i, j, :] = np.einsum('nhwc,hwco->no', patch, w)
  return out + b


@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('impl', ['xla', 'patches'])
def test_conv2d_matches_numpy_loops(impl, stride):
  rng = np.random.default_rng(stride)
  x = rng.normal(size=(2, 7, 6, 3)).astype(np.float32)
  w = rng.normal(size=(3, 3, 3, 4)).astype(np.float32)
  b = rng.normal(size=(4,)).astype(np.float32)
  got = layers.conv2d(
    jnp.asarray(x), jnp.asarray(w), jnp.asarray(b), stride=stride, impl=impl
  )
  np.testing.assert_allclose(
    got, numpy_conv_same(x, w, b, stride), rtol=1e-4, atol=1e-5
  )


@pytest.mark.parametrize('size, stride', [(28, 2), (7, 2), (4, 2), (5, 1), (8, 3)])
def test_image_patches_equal_lax_patches(size, stride, x64):
  x = jax.random.normal(jax.random.key(size), (2, size, size + 1, 3), jnp.float64)
  got = layers.image_patches(x, 3, 2, stride)
  ref = jax.lax.conv_general_dilated_patches(
    x, (3, 2), (stride, stride), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC')
  )
  # lax orders patch features (cin, kh, kw); image_patches orders them (kh, kw, cin).
  n, h, w, _ = ref.shape
  ref = ref.reshape(n, h, w, 3, 3, 2).transpose(0, 1, 2, 4, 5, 3).reshape(n, h, w, -1)
  np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize('stride', [1, 2])
def test_patches_conv_gradients_equal_xla_conv(stride, x64):
  keys = jax.random.split(jax.random.key(stride), 3)
  x = jax.random.normal(keys[0], (2, 7, 6, 3), jnp.float64)
  w = jax.random.normal(keys[1], (3, 3, 3, 4), jnp.float64)
  b = jnp.zeros((4,), jnp.float64)
  ct = jax.random.normal(keys[2], layers.conv2d(x, w, b, stride=stride).shape)

  def vjp(impl):
    out, pull = jax.vjp(
      lambda x, w: layers.conv2d(x, w, b, stride=stride, impl=impl), x, w
    )
    return out, pull(ct)

  chex.assert_trees_all_close(vjp('patches'), vjp('xla'), rtol=1e-10, atol=1e-12)


def test_max_pool_matches_numpy():
  x = np.random.default_rng(0).normal(size=(2, 6, 5, 3)).astype(np.float32)
  expected = x[:, :6, :4].reshape(2, 3, 2, 2, 2, 3).max(axis=(2, 4))
  np.testing.assert_array_equal(layers.max_pool_2x2(jnp.asarray(x)), expected)


def test_max_pool_gradient_matches_reduce_window():
  """Without ties both route each window's cotangent to its maximum."""
  x = jax.random.normal(jax.random.key(0), (2, 7, 6, 3))
  w = jax.random.normal(jax.random.key(1), (2, 3, 3, 3))

  def reference(x):
    return jax.lax.reduce_window(
      x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), 'VALID'
    )

  grad = jax.grad(lambda x: jnp.sum(layers.max_pool_2x2(x) * w))(x)
  expected = jax.grad(lambda x: jnp.sum(reference(x) * w))(x)
  np.testing.assert_array_equal(grad, expected)


def test_transductive_batch_norm_moments(x64):
  rng = np.random.default_rng(1)
  x = rng.normal(2.0, 0.01, size=(3, 4, 4, 5))
  scale = rng.uniform(0.5, 2.0, size=5)
  bias = rng.normal(size=5)
  eps = 1e-5
  y = np.asarray(layers.batch_norm(jnp.asarray(x), scale, bias, eps=eps))
  var_x = np.var(x, axis=(0, 1, 2))
  np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), bias, rtol=1e-10, atol=1e-12)
  # var(y) = scale^2 var(x) / (var(x) + eps): the eps effect is visible at this spread.
  np.testing.assert_allclose(
    y.var(axis=(0, 1, 2)), scale**2 * var_x / (var_x + eps), rtol=1e-10
  )
  assert np.all(np.abs(y.var(axis=(0, 1, 2)) - scale**2) > 1e-3 * scale**2)
  with pytest.raises(ValueError, match='unknown batch_norm mode'):
    layers.batch_norm(x, scale, bias, mode='inference')


def test_support_batch_norm_uses_the_support_statistics(x64):
  rng = np.random.default_rng(2)
  x = rng.normal(size=(5, 3, 3, 4))
  scale, bias, eps = rng.uniform(0.5, 2.0, size=4), rng.normal(size=4), 1e-5
  y = layers.batch_norm(jnp.asarray(x), scale, bias, mode='support', num_support=2)
  mean = x[:2].mean(axis=(0, 1, 2))
  var = x[:2].var(axis=(0, 1, 2))
  np.testing.assert_allclose(
    y, (x - mean) / np.sqrt(var + eps) * scale + bias, rtol=1e-10, atol=1e-12
  )
  with pytest.raises(ValueError, match='needs num_support in'):
    layers.batch_norm(x, scale, bias, mode='support')
  with pytest.raises(ValueError, match='needs num_support in'):
    layers.batch_norm(x, scale, bias, mode='support', num_support=6)
  with pytest.raises(ValueError, match='only used with'):
    layers.batch_norm(x, scale, bias, num_support=2)


def images(shape, seed=0):
  return jax.random.normal(jax.random.key(seed), shape)


def shapes(model, x):
  """Params and output shapes, evaluated abstractly (nothing is compiled)."""
  params = jax.eval_shape(model.init, jax.random.key(0), x)
  return params, jax.eval_shape(model.apply, params, x)


def test_strided_output_shapes():
  x = jnp.zeros((3, 8, 8, 1))
  params, out = shapes(jmeta.conv4(5, variant='strided', filters=4), x)
  chex.assert_shape(out, (3, 5))
  chex.assert_shape(params['head']['w'], (4, 5))
  chex.assert_shape(params['block_0']['w'], (3, 3, 1, 4))
  chex.assert_shape(params['block_3']['w'], (3, 3, 4, 4))
  # Stride 2 with 'SAME' padding: 28 -> 14 -> 7 -> 4 -> 2, then a spatial mean.
  eparams, eout = shapes(
    jmeta.conv4(0, variant='strided', filters=4), jnp.zeros((3, 28, 28, 1))
  )
  assert 'head' not in eparams
  chex.assert_shape(eout, (3, 4))


def test_maxpool_output_shapes():
  # 32 -> 16 -> 8 -> 4 -> 2: features are 2 * 2 * filters, flattened.
  x = jnp.zeros((2, 32, 32, 3))
  params, out = shapes(jmeta.conv4(0, variant='maxpool', filters=4), x)
  chex.assert_shape(params['block_0']['w'], (3, 3, 3, 4))
  chex.assert_shape(out, (2, 16))
  hparams, hout = shapes(jmeta.conv4(7, variant='maxpool', filters=4), x)
  chex.assert_shape(hparams['head']['w'], (16, 7))
  chex.assert_shape(hout, (2, 7))


def test_strided_block_output_is_spatially_halved():
  x = jnp.zeros((2, 7, 7, 3))
  w, b = jnp.zeros((3, 3, 3, 4)), jnp.zeros((4,))
  for impl in ('xla', 'patches'):
    chex.assert_shape(layers.conv2d(x, w, b, stride=2, impl=impl), (2, 4, 4, 4))
    chex.assert_shape(layers.conv2d(x, w, b, stride=1, impl=impl), (2, 7, 7, 4))
  chex.assert_shape(layers.max_pool_2x2(jnp.zeros((2, 7, 7, 3))), (2, 3, 3, 3))


def test_transductive_outputs_depend_on_the_rest_of_the_batch():
  x = images((4, 8, 8, 1), seed=1)
  model = jmeta.conv4(3, filters=4, conv_impl='xla')
  params = model.init(jax.random.key(2), x)
  apply = jax.jit(model.apply)
  whole = apply(params, x)
  assert not np.allclose(whole[:2], apply(params, x[:2]))
  # Normalisation statistics are per call: permuting the batch permutes the output.
  chex.assert_trees_all_close(apply(params, x[::-1]), whole[::-1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('variant, size', [('strided', 8), ('maxpool', 16)])
def test_patches_and_xla_give_the_same_outputs(variant, size):
  x = images((3, size, size, 2), seed=2)
  xla = jmeta.conv4(4, variant=variant, filters=4, conv_impl='xla')
  patches = jmeta.conv4(4, variant=variant, filters=4, conv_impl='patches')
  params = xla.init(jax.random.key(3), x)
  chex.assert_trees_all_equal_shapes(params, patches.init(jax.random.key(3), x))
  chex.assert_trees_all_close(
    jax.jit(patches.apply)(params, x),
    jax.jit(xla.apply)(params, x),
    rtol=1e-4,
    atol=1e-5,
  )


def _xla_convolutions(model, params, x) -> int:
  jaxpr = jax.make_jaxpr(model.apply)(params, x)
  return str(jaxpr).count('conv_general_dilated')


@pytest.mark.parametrize('variant, size', [('strided', 8), ('maxpool', 16)])
def test_conv_impl_per_block(variant, size):
  x = images((3, size, size, 1), seed=4)
  every = jmeta.conv4(4, variant=variant, filters=4, conv_impl='patches')
  params = every.init(jax.random.key(5), x)
  # Each block uses the implementation named for it: count XLA's convolutions.
  for spec, xla_blocks in [
    ('patches', 0),
    ('xla', 4),
    ('xla,patches,patches,patches', 1),
    (('patches', 'xla', 'xla', 'patches'), 2),
    ('patches,patches,patches,xla', 1),
  ]:
    model = jmeta.conv4(4, variant=variant, filters=4, conv_impl=spec)
    assert _xla_convolutions(model, params, x) == xla_blocks, spec
    chex.assert_trees_all_close(
      jax.jit(model.apply)(params, x),
      jax.jit(every.apply)(params, x),
      rtol=1e-4,
      atol=1e-5,
    )
  assert layers.resolve_conv_impls('auto,xla', 2) == (
    jmeta.models.default_conv_impl(),
    'xla',
  )


def test_conv_impl_per_block_refuses_another_count_or_name():
  with pytest.raises(ValueError, match='names 2 layers, but the network has 4'):
    jmeta.conv4(5, conv_impl='xla,patches')
  with pytest.raises(ValueError, match='names 5 layers'):
    jmeta.conv4(5, conv_impl=['xla'] * 5)
  with pytest.raises(ValueError, match="unknown conv impl 'cudnn'"):
    jmeta.conv4(5, conv_impl='xla,cudnn,patches,patches')


@pytest.mark.parametrize('dtype', [jnp.uint8, jnp.bfloat16])
def test_both_conv_impls_accept_inputs_of_another_dtype_than_the_params(dtype):
  # Regression: 'xla' used to raise on inputs whose dtype differed from the float32
  # weights, while 'patches' promoted them.
  x = (images((2, 8, 8, 1)) * 20 + 50).astype(dtype)
  outs = []
  for impl in ('xla', 'patches'):
    model = jmeta.conv4(3, filters=4, conv_impl=impl)
    params = model.init(jax.random.key(6), x)
    outs.append(jax.jit(model.apply)(params, x))
  assert outs[0].dtype == outs[1].dtype == jnp.float32
  chex.assert_trees_all_close(outs[0], outs[1], rtol=1e-4, atol=1e-5)


def test_patches_and_xla_give_the_same_second_order_meta_gradient(x64):
  num_tasks, n = 2, 3
  keys = jax.random.split(jax.random.key(4), 2)
  sx = jax.random.normal(keys[0], (num_tasks, n, 8, 8, 1), jnp.float64)
  qx = jax.random.normal(keys[1], (num_tasks, n, 8, 8, 1), jnp.float64)
  labels = jnp.tile(jnp.arange(n), (num_tasks, 1))
  batch = jmeta.TaskBatch(sx, labels, qx, labels)
  params = jmeta.conv4(n, filters=4).init(jax.random.key(5), sx[0])
  params = jax.tree.map(lambda p: p.astype(jnp.float64), params)
  grads = {}
  for impl in ('xla', 'patches'):
    model = jmeta.conv4(n, filters=4, conv_impl=impl)
    est = jmeta.maml(
      model,
      jmeta.losses.cross_entropy,
      inner_steps=1,
      inner_learning_rate=0.5,
      batching='map',
    )
    grads[impl], _ = jax.jit(est.meta_gradient)(params, batch)
  chex.assert_tree_all_finite(grads['xla'])
  chex.assert_trees_all_close(grads['patches'], grads['xla'], rtol=1e-8, atol=1e-12)
  # Every block receives gradient, so the comparison covers every convolution.
  for i in range(4):
    assert np.max(np.abs(grads['xla'][f'block_{i}']['w'])) > 1e-8


def test_default_conv_impl_per_backend():
  assert jmeta.models.default_conv_impl('cpu') == 'patches'
  assert jmeta.models.default_conv_impl('gpu') == 'patches'
  assert jmeta.models.default_conv_impl('tpu') == 'xla'
  assert layers.resolve_conv_impl('auto') == jmeta.models.default_conv_impl()


def test_conv4_rejects_bad_arguments():
  with pytest.raises(ValueError, match="unknown Conv4 variant 'resnet'"):
    jmeta.conv4(5, variant='resnet')
  with pytest.raises(ValueError, match='num_classes >= 0 and filters >= 1'):
    jmeta.conv4(-1)
  with pytest.raises(ValueError, match='num_classes >= 0 and filters >= 1'):
    jmeta.conv4(5, filters=0)
  with pytest.raises(ValueError, match='unknown conv impl'):
    jmeta.conv4(5, conv_impl='cudnn')
  with pytest.raises(ValueError, match='NHWC images'):
    jmeta.conv4(5, filters=4).init(jax.random.key(0), jnp.zeros((2, 8, 8)))
  with pytest.raises(ValueError, match="unknown head_init 'zeros'"):
    jmeta.conv4(5, head_init='zeros')
  with pytest.raises(ValueError, match="unknown block_init 'he'.*torch_2017"):
    jmeta.conv4(5, block_init='he')
  with pytest.raises(ValueError, match='batch_norm_eps must be positive'):
    jmeta.conv4(5, batch_norm_eps=0.0)


def test_batch_norm_without_scale_and_with_another_eps(x64):
  rng = np.random.default_rng(3)
  x = rng.normal(1.0, 0.03, size=(4, 3, 3, 2))
  bias = rng.normal(size=2)
  y = np.asarray(layers.batch_norm(jnp.asarray(x), None, bias, eps=1e-3))
  mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
  np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-3) + bias, rtol=1e-12)
  # At this spread eps = 1e-3 shrinks the output well below unit variance.
  assert np.all(y.var(axis=(0, 1, 2)) < 0.6)


def test_reference_maml_network_options():
  """No batch-norm scale, eps 1e-3 and a standard-normal head (MAML's code)."""
  x = jax.random.normal(jax.random.key(1), (6, 28, 28, 1))
  default = jmeta.conv4(5, filters=8, conv_impl='xla')
  reference = jmeta.conv4(
    5,
    filters=8,
    conv_impl='xla',
    batch_norm_scale=False,
    batch_norm_eps=1e-3,
    head_init='normal',
  )
  p, q = default.init(jax.random.key(0), x), reference.init(jax.random.key(0), x)
  assert 'scale' in p['block_0'] and 'scale' not in q['block_0']
  chex.assert_trees_all_equal(
    {k: v for k, v in p['block_0'].items() if k != 'scale'}, q['block_0']
  )
  w = np.asarray(q['head']['w'])
  assert w.shape == (8, 5) and np.all(np.asarray(q['head']['b']) == 0)
  bound = np.sqrt(6 / (8 + 5))  # Glorot-uniform's
  assert np.all(np.abs(np.asarray(p['head']['w'])) <= bound)
  assert np.abs(w).max() > bound and 0.6 < w.std() < 1.4
  # With the head and eps of the reference, a unit scale changes nothing.
  same_head = {**p, 'head': q['head']}
  scaled = jmeta.conv4(5, filters=8, conv_impl='xla', batch_norm_eps=1e-3)
  np.testing.assert_allclose(
    reference.apply(q, x), scaled.apply(same_head, x), rtol=1e-6, atol=1e-6
  )
  # eps matters at the default network's activations: 1e-5 gives other outputs.
  assert not np.allclose(reference.apply(q, x), default.apply(same_head, x), atol=1e-4)


def test_excluding_batch_norm_offsets_selects_all_but_the_offsets():
  from jmeta.inner_rules import head_mask

  model = jmeta.conv4(5, filters=4, batch_norm_scale=False)
  params = model.init(jax.random.key(0), jnp.zeros((2, 28, 28, 1)))
  mask = head_mask(params, jmeta.models.excluding_batch_norm_offsets)
  for name, block in mask.items():
    expected = {k: not (name.startswith('block_') and k == 'bias') for k in block}
    assert block == expected, name
  assert mask['head'] == {'w': True, 'b': True}


def test_torch_2017_block_init_draws_pytorch_s_old_defaults():
  """Conv weights and biases U(+-1/sqrt(9 cin)) and batch-norm scales U(0, 1), as
  PyTorch drew them before pytorch/pytorch#12325; offsets zero, the head unchanged."""
  x = jnp.zeros((2, 28, 28, 1))
  torch = jmeta.conv4(5, variant='maxpool', block_init='torch_2017').init(
    jax.random.key(0), x
  )
  glorot = jmeta.conv4(5, variant='maxpool').init(jax.random.key(0), x)
  chex.assert_trees_all_equal(torch['head'], glorot['head'])
  for i, cin in enumerate((1, 64, 64, 64)):
    block = {k: np.asarray(v) for k, v in torch[f'block_{i}'].items()}
    bound = 1 / np.sqrt(9 * cin)
    w = block['w']
    assert w.shape == (3, 3, cin, 64)
    assert np.abs(w).max() <= bound and np.abs(block['b']).max() <= bound
    # U(-a, a) has standard deviation a / sqrt(3): 0.024 at cin 64 and 0.19 at cin
    # 1, where Glorot's sqrt(2 / (9 (cin + 64))) is 0.042 and 0.058. The tolerances
    # are about 5 standard errors of the estimate from 36,864 and 576 draws.
    np.testing.assert_allclose(w.std(), bound / np.sqrt(3), rtol=0.02 if i else 0.1)
    assert np.all((0 <= block['scale']) & (block['scale'] < 1))
    assert 0.35 < block['scale'].mean() < 0.65 and block['scale'].std() > 0.2
    assert np.all(block['bias'] == 0) and np.all(block['b'] != 0)
    assert not np.array_equal(w, np.asarray(glorot[f'block_{i}']['w']))
  # Without a batch-norm scale there is nothing to draw from U(0, 1).
  plain = jmeta.conv4(
    0, variant='maxpool', block_init='torch_2017', batch_norm_scale=False
  ).init(jax.random.key(0), x)
  assert 'scale' not in plain['block_0']
  chex.assert_trees_all_equal(plain['block_0']['w'], torch['block_0']['w'])
