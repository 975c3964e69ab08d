"""population_batch_norm: batch norm with the statistics of fixed reference inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jmeta


def _model_and_data():
  model = jmeta.conv4(0, variant='maxpool', filters=4, conv_impl='xla')
  x = jax.random.normal(jax.random.key(0), (6, 28, 28, 1))
  params = model.init(jax.random.key(1), x)
  # Non-zero offsets and scales, so a wrong statistic cannot cancel out.
  params = jax.tree.map(
    lambda p: p + 0.3 * jax.random.normal(jax.random.key(2), p.shape), params
  )
  return model, params, x


def test_reference_inputs_equal_to_the_batch_give_transductive_batch_norm():
  model, params, x = _model_and_data()
  transductive = model.apply(params, x, batch_norm='transductive')
  # The same set twice has the same mean and (biased) variance.
  for reference in (x, jnp.concatenate([x, x])):
    wrapped = jmeta.models.population_batch_norm(model, reference)
    np.testing.assert_allclose(
      wrapped.apply(params, x), transductive, rtol=1e-4, atol=1e-5
    )


def test_each_output_depends_on_its_own_input_and_the_reference_only():
  model, params, x = _model_and_data()
  reference = jax.random.normal(jax.random.key(3), (10, 28, 28, 1))
  wrapped = jmeta.models.population_batch_norm(model, reference)
  together = wrapped.apply(params, x, batch_norm='support', num_support=2)
  alone = jnp.concatenate([wrapped.apply(params, x[i : i + 1]) for i in range(6)])
  np.testing.assert_allclose(together, alone, rtol=1e-4, atol=1e-5)
  # ... while the model's own modes depend on the batch.
  own = model.apply(params, x, batch_norm='support', num_support=2)
  assert np.max(np.abs(own - together)) > 1e-2


def test_an_empty_reference_is_refused():
  model, _, _ = _model_and_data()
  with pytest.raises(ValueError, match='at least one example'):
    jmeta.models.population_batch_norm(model, jnp.zeros((0, 28, 28, 1)))
