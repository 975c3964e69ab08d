"""TaskBatch validation: every malformed batch is rejected with a message naming it."""

import pydoc

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jmeta
from jmeta.data import make_episode_sampler
from jmeta.tasks import check_task_batch_shapes


def classification_batch(num_tasks=2, n_way=3, shots=2, queries=4, features=(5,)):
  rng = np.random.default_rng(0)
  return jmeta.TaskBatch(
    rng.normal(size=(num_tasks, n_way * shots, *features)).astype(np.float32),
    np.tile(np.repeat(np.arange(n_way), shots), (num_tasks, 1)),
    rng.normal(size=(num_tasks, queries, *features)).astype(np.float32),
    rng.integers(0, n_way, size=(num_tasks, queries)),
  )


def test_valid_batch_passes_and_reports_num_tasks():
  batch = classification_batch()
  jmeta.validate_task_batch(batch)
  jmeta.validate_task_batch(batch, num_classes=3)
  assert batch.num_tasks == 2
  # A TaskBatch is a pytree: jit and tree.map see its four fields.
  assert len(jax.tree.leaves(batch)) == 4
  doubled = jax.jit(lambda b: jax.tree.map(lambda x: x * 2, b))(batch)
  assert isinstance(doubled, jmeta.TaskBatch)


def test_support_query_feature_mismatch():
  batch = classification_batch()
  bad = batch._replace(query_inputs=np.zeros((2, 4, 6), np.float32))
  with pytest.raises(
    ValueError, match=r'different feature shapes: support \(5,\) vs query \(6,\)'
  ):
    jmeta.validate_task_batch(bad)


@pytest.mark.parametrize('label', [-1, 3, 7])
def test_labels_outside_n_way(label):
  batch = classification_batch()
  labels = batch.query_targets.copy()
  labels[1, 2] = label
  with pytest.raises(
    ValueError, match=r'query_targets has labels in .*outside \[0, 3\)'
  ):
    jmeta.validate_task_batch(batch._replace(query_targets=labels), num_classes=3)
  # Without num_classes, labels are not checked.
  jmeta.validate_task_batch(batch._replace(query_targets=labels))


def test_labels_must_be_integers():
  batch = classification_batch()
  bad = batch._replace(support_targets=batch.support_targets.astype(np.float32))
  with pytest.raises(ValueError, match='support_targets has dtype float32'):
    jmeta.validate_task_batch(bad, num_classes=3)
  with pytest.raises(ValueError, match='num_classes must be positive'):
    jmeta.validate_task_batch(batch, num_classes=0)


def test_empty_support_and_query_sets():
  batch = classification_batch()
  no_support = batch._replace(
    support_inputs=batch.support_inputs[:, :0],
    support_targets=batch.support_targets[:, :0],
  )
  with pytest.raises(ValueError, match='support set is empty'):
    jmeta.validate_task_batch(no_support)
  no_query = batch._replace(
    query_inputs=batch.query_inputs[:, :0], query_targets=batch.query_targets[:, :0]
  )
  with pytest.raises(ValueError, match='query set is empty'):
    jmeta.validate_task_batch(no_query)


def test_mismatched_leading_axes():
  batch = classification_batch()
  with pytest.raises(ValueError, match='same number of tasks'):
    jmeta.validate_task_batch(batch._replace(query_inputs=batch.query_inputs[:1]))
  with pytest.raises(ValueError, match='support_targets has shape'):
    jmeta.validate_task_batch(
      batch._replace(support_targets=batch.support_targets[:, :3])
    )
  with pytest.raises(ValueError, match='query_targets has shape'):
    jmeta.validate_task_batch(batch._replace(query_targets=batch.query_targets[:, :3]))
  with pytest.raises(ValueError, match='needs a leading task axis and an example axis'):
    jmeta.validate_task_batch(batch._replace(query_targets=np.zeros(2, np.int32)))


def test_support_and_query_target_shapes_must_agree():
  rng = np.random.default_rng(1)
  batch = jmeta.TaskBatch(
    rng.normal(size=(2, 3, 1)),
    rng.normal(size=(2, 3, 1)),
    rng.normal(size=(2, 4, 1)),
    rng.normal(size=(2, 4, 2)),
  )
  with pytest.raises(ValueError, match='different shapes per example'):
    jmeta.validate_task_batch(batch)


def test_shape_checks_run_at_trace_time_under_jit():
  batch = classification_batch()
  bad = batch._replace(query_inputs=jnp.zeros((2, 4, 6)))

  @jax.jit
  def f(b):
    check_task_batch_shapes(b)
    return b.support_inputs.sum()

  f(batch)
  with pytest.raises(ValueError, match='different feature shapes'):
    f(bad)


def test_not_a_task_batch():
  with pytest.raises(TypeError, match='expected a jmeta.TaskBatch'):
    jmeta.validate_task_batch((np.zeros((1, 1)),) * 4)


def test_help_states_the_dtypes_the_samplers_return():
  """help(TaskBatch) names the dtypes and ranges that the samplers really return."""
  text = ' '.join(
    w
    for w in pydoc.render_doc(jmeta.TaskBatch, renderer=pydoc.plaintext).split()
    if w != '|'
  )
  n_way = 4
  bank = np.random.default_rng(0).integers(0, 256, (6, 5, 8, 8), dtype=np.uint8)
  episodes = make_episode_sampler(
    jnp.asarray(bank), n_way=n_way, k_shot=2, q_query=3
  ).sample(jax.random.key(0), 6)
  image, label = episodes.support_inputs.dtype, episodes.support_targets.dtype
  assert (episodes.query_inputs.dtype, episodes.query_targets.dtype) == (image, label)
  assert episodes.support_inputs.shape == (6, n_way * 2, 8, 8, 1)
  assert episodes.support_targets.shape == (6, n_way * 2)
  assert 0 <= float(episodes.support_inputs.min())
  assert float(episodes.support_inputs.max()) <= 1
  assert sorted(np.unique(episodes.query_targets).tolist()) == list(range(n_way))
  assert f'images as {image} in [0, 1]' in text
  assert f'labels as {label} in ``[0, n_way)``' in text
  assert '(tasks, n_way * shots, height, width, 1)' in text

  sines = jmeta.sinusoid_tasks(3, 4).sample(jax.random.key(0), 2)
  assert {x.dtype for x in sines} == {jnp.dtype(jnp.float32)}
  assert sines.support_inputs.shape == sines.support_targets.shape == (2, 3, 1)
  assert 'float inputs and targets of shape ``(tasks, shots, 1)``, float32' in text
