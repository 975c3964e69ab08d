"""ANIL against MAML with a head-masked inner optimizer, finite differences, Conv4."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jmeta
from jmeta.algorithms.anil import anil, anil_adapt
from jmeta.inner_rules import head_mask
from jmeta.losses import mean_squared_error

NUM_TASKS = 3
LR = 0.1


def body_head_model():
  """A tanh MLP body and a linear head, params ``{'body': ..., 'head': ...}``."""
  body, head = jmeta.mlp((5,), 4, activation=jnp.tanh), jmeta.mlp((), 1)

  def init(key, example_inputs):
    kb, kh = jax.random.split(key)
    body_params = body.init(kb, example_inputs)
    features = jnp.tanh(body.apply(body_params, example_inputs))
    return {'body': body_params, 'head': head.init(kh, features)}

  def apply(params, inputs, **kwargs):
    del kwargs
    return head.apply(params['head'], jnp.tanh(body.apply(params['body'], inputs)))

  return jmeta.Model(init, apply)


def setup():
  """Call inside ``x64``: the model, float64 params and a sinusoid batch."""
  model = body_head_model()
  batch = jmeta.sinusoid_tasks(4, 5, dtype=jnp.float64).sample(
    jax.random.key(0), NUM_TASKS
  )
  params = model.init(jax.random.key(1), batch.support_inputs[0])
  return model, jax.tree.map(lambda p: p.astype(jnp.float64), params), batch


def random_like(key, tree):
  leaves, treedef = jax.tree.flatten(tree)
  keys = jax.random.split(key, len(leaves))
  return jax.tree.unflatten(
    treedef, [jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)]
  )


def tree_vdot(a, b):
  return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def directional_fd(f, params, direction, h=1e-5):
  """Five-point central difference of f along direction: error O(h^4)."""

  def at(s):
    return f(jax.tree.map(lambda p, v: p + s * h * v, params, direction))

  return (-at(2) + 8 * at(1) - 8 * at(-1) + at(-2)) / (12 * h)


def masked_sgd(params, head='head'):
  """SGD on the head only: MAML with this inner optimizer is ANIL."""
  labels = jax.tree.map(lambda h: 'head' if h else 'body', head_mask(params, head))
  return optax.multi_transform(
    {'head': optax.sgd(LR), 'body': optax.set_to_zero()}, labels
  )


@pytest.mark.parametrize(
  'first_order, remat', [(False, False), (True, False), (False, True)]
)
def test_anil_equals_maml_with_a_head_masked_inner_optimizer(x64, first_order, remat):
  model, params, batch = setup()
  kwargs = dict(inner_steps=2, batching='vmap')
  est = anil(
    model,
    mean_squared_error,
    inner_learning_rate=LR,
    first_order=first_order,
    remat=remat,
    **kwargs,
  )
  assert est.name == 'anil'
  program = str(jax.make_jaxpr(est.meta_gradient)(params, batch))
  assert ('remat' in program) == remat
  make_ref = jmeta.fomaml if first_order else jmeta.maml
  ref = make_ref(
    model, mean_squared_error, inner_optimizer=masked_sgd(params), **kwargs
  )
  got = jax.jit(est.meta_gradient)(params, batch)
  want = jax.jit(ref.meta_gradient)(params, batch)
  chex.assert_trees_all_close(got, want, rtol=1e-12, atol=1e-14)
  # The body is meta-learned: it gets a non-zero gradient.
  assert (
    max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(got.grads['body'])) > 1e-6
  )


def test_body_meta_gradient_matches_finite_differences(x64):
  model, params, batch = setup()
  est = anil(
    model, mean_squared_error, inner_steps=2, inner_learning_rate=LR, batching='map'
  )
  grads, metrics = jax.jit(est.meta_gradient)(params, batch)

  @jax.jit
  def meta_loss(p):
    # Independent of the estimator: a Python loop of anil_adapt + query loss.
    losses = []
    for i in range(NUM_TASKS):
      phi = anil_adapt(
        model,
        mean_squared_error,
        p,
        batch.support_inputs[i],
        batch.support_targets[i],
        steps=2,
        learning_rate=LR,
      )
      losses.append(
        mean_squared_error(
          model.apply(phi, batch.query_inputs[i]), batch.query_targets[i]
        )
      )
    return jnp.mean(jnp.stack(losses))

  np.testing.assert_allclose(metrics['loss'], meta_loss(params), rtol=1e-12)
  zeros = jax.tree.map(jnp.zeros_like, params['head'])
  for key in jax.random.split(jax.random.key(2), 3):
    direction = {'body': random_like(key, params['body']), 'head': zeros}
    along = tree_vdot(grads['body'], direction['body'])
    fd = directional_fd(meta_loss, params, direction)
    np.testing.assert_allclose(along, fd, rtol=1e-6)


def test_anil_adapt_changes_only_the_head(x64):
  model, params, batch = setup()
  x, y = batch.support_inputs[0], batch.support_targets[0]
  adapted = anil_adapt(
    model, mean_squared_error, params, x, y, steps=3, learning_rate=LR
  )
  chex.assert_trees_all_equal(adapted['body'], params['body'])
  by_adapt = jmeta.adapt(
    model, mean_squared_error, params, x, y, steps=3, optimizer=masked_sgd(params)
  )
  chex.assert_trees_all_close(adapted, by_adapt, rtol=1e-12, atol=1e-14)
  assert not np.allclose(
    adapted['head']['layer_0']['w'], params['head']['layer_0']['w']
  )


def test_anil_on_conv4_adapts_its_head(x64):
  model = jmeta.conv4(3, filters=2, conv_impl='xla')
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.normal(size=(2, 6, 8, 8, 1)))
  labels = jnp.asarray(np.tile(np.arange(3), (2, 2)))
  batch = jmeta.TaskBatch(images[:, :3], labels[:, :3], images[:, 3:], labels[:, 3:])
  params = model.init(jax.random.key(0), images[0])
  params = jax.tree.map(lambda p: p.astype(jnp.float64), params)
  loss = jmeta.losses.cross_entropy
  est = anil(model, loss, inner_steps=1, inner_learning_rate=LR, batching='map')
  ref = jmeta.maml(
    model, loss, inner_steps=1, inner_optimizer=masked_sgd(params), batching='map'
  )
  got = jax.jit(est.meta_gradient)(params, batch)
  chex.assert_tree_all_finite(got)
  chex.assert_trees_all_close(
    got, jax.jit(ref.meta_gradient)(params, batch), rtol=1e-10, atol=1e-13
  )


def test_a_predicate_selects_the_adapted_leaves(x64):
  model, params, batch = setup()

  def biases(path):
    return path[-1].key == 'b'

  mask = head_mask(params, biases)
  assert mask['body']['layer_0'] == {'w': False, 'b': True}
  assert mask['head']['layer_0'] == {'w': False, 'b': True}
  x, y = batch.support_inputs[0], batch.support_targets[0]
  adapted = anil_adapt(
    model, mean_squared_error, params, x, y, steps=2, head=biases, learning_rate=LR
  )
  by_adapt = jmeta.adapt(
    model,
    mean_squared_error,
    params,
    x,
    y,
    steps=2,
    optimizer=masked_sgd(params, biases),
  )
  chex.assert_trees_all_close(adapted, by_adapt, rtol=1e-12, atol=1e-14)


# --- Bad input ----------------------------------------------------------------------


def test_bad_selectors_raise():
  model = body_head_model()
  batch = jmeta.sinusoid_tasks(2, 2).sample(jax.random.key(0), 2)
  params = model.init(jax.random.key(0), batch.support_inputs[0])
  with pytest.raises(ValueError, match='selects no parameter.*body.*head'):
    head_mask(params, 'classifier')
  with pytest.raises(ValueError, match='selects every parameter'):
    head_mask(params, lambda path: True)
  with pytest.raises(ValueError, match='head must be a top-level key name'):
    anil(model, mean_squared_error, head=3, inner_steps=1, inner_learning_rate=LR)
  for head, match in (('classifier', 'selects no'), (lambda p: True, 'every')):
    est = anil(
      model, mean_squared_error, head=head, inner_steps=1, inner_learning_rate=LR
    )
    with pytest.raises(ValueError, match=match):
      est.meta_gradient(params, batch)
    with pytest.raises(ValueError, match=match):
      anil_adapt(
        model,
        mean_squared_error,
        params,
        batch.support_inputs[0],
        batch.support_targets[0],
        steps=1,
        head=head,
        learning_rate=LR,
      )


def test_anil_rejects_bad_inner_arguments():
  model = body_head_model()
  with pytest.raises(ValueError, match='inner_steps must be'):
    anil(model, mean_squared_error, inner_steps=1.5, inner_learning_rate=LR)
  with pytest.raises(ValueError, match='needs a learning_rate'):
    anil(model, mean_squared_error, inner_steps=1)
  with pytest.raises(ValueError, match='either an inner optimizer'):
    anil(
      model,
      mean_squared_error,
      inner_steps=1,
      inner_learning_rate=LR,
      inner_optimizer=optax.sgd(LR),
    )
  with pytest.raises(ValueError, match='unknown batching strategy'):
    anil(model, mean_squared_error, inner_steps=1, inner_learning_rate=LR, batching='x')


def test_maml_adapts_only_the_selected_leaves_and_trains_the_rest_outside(x64):
  """MAML's reference network: every leaf but the batch-norm offsets adapts."""
  model = jmeta.conv4(
    3, filters=2, conv_impl='xla', batch_norm_scale=False, head_init='normal'
  )
  rng = np.random.default_rng(1)
  images = jnp.asarray(rng.normal(size=(2, 6, 8, 8, 1)))
  labels = jnp.asarray(np.tile(np.arange(3), (2, 2)))
  batch = jmeta.TaskBatch(images[:, :3], labels[:, :3], images[:, 3:], labels[:, 3:])
  params = model.init(jax.random.key(0), images[0])
  params = jax.tree.map(lambda p: p.astype(jnp.float64) + 0.1, params)
  loss = jmeta.losses.cross_entropy
  select = jmeta.models.excluding_batch_norm_offsets
  learner = jmeta.maml(
    model, loss, inner_steps=2, inner_learning_rate=LR, adapts=select, batching='map'
  )
  grads, metrics = jax.jit(learner.meta_gradient)(params, batch)

  def meta_loss(p):
    # By hand: two SGD steps whose gradient on the offsets is zeroed.
    losses = []
    for x, y, qx, qy in zip(*batch[:4]):
      phi = p
      for _ in range(2):
        g = jax.grad(lambda q, x=x, y=y: loss(model.apply(q, x), y))(phi)
        g = jax.tree_util.tree_map_with_path(
          lambda path, v: v if select(path) else jnp.zeros_like(v), g
        )
        phi = jax.tree.map(lambda w, d: w - LR * d, phi, g)
      losses.append(loss(model.apply(phi, qx), qy))
    return jnp.mean(jnp.stack(losses))

  # Jitted: op by op, the second-order gradient's dispatch dominated this test.
  want_loss, want_grads = jax.jit(jax.value_and_grad(meta_loss))(params)
  np.testing.assert_allclose(metrics['loss'], want_loss, rtol=1e-12)
  chex.assert_trees_all_close(grads, want_grads, rtol=1e-9, atol=1e-12)
  # The offsets get an outer gradient, and plain MAML gives another one.
  assert float(jnp.max(jnp.abs(grads['block_1']['bias']))) > 1e-6
  plain = jmeta.maml(model, loss, inner_steps=2, inner_learning_rate=LR, batching='map')
  assert not np.allclose(
    jax.jit(plain.meta_gradient)(params, batch)[0]['block_1']['bias'],
    grads['block_1']['bias'],
  )
