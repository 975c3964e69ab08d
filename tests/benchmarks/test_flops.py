"""The FLOP count behind benchmarks/flops.py: closed forms, and loops against twins."""

import json
import os
import pathlib

import flops  # benchmarks/flops.py (conftest.py puts benchmarks/ on sys.path)
import jax
import jax.numpy as jnp
import optax
import pytest
import tables

import jmeta

ROOT = pathlib.Path(__file__).parents[2]


def test_dot_is_two_m_n_k_as_xla_counts_it():
  a, b = jnp.ones((8, 16)), jnp.ones((16, 4))
  assert flops.matmul_flops(jnp.dot, a, b) == 2 * 8 * 16 * 4
  assert flops.xla_flops(jnp.dot, a, b) == 2 * 8 * 16 * 4
  batched = jnp.ones((3, 8, 16))
  assert flops.matmul_flops(jnp.matmul, batched, b) == 3 * 2 * 8 * 16 * 4


def test_strided_conv_counts_every_kernel_tap():
  images, kernel = jnp.ones((4, 9, 9, 2)), jnp.ones((3, 3, 2, 5))

  def conv(images, kernel):
    return jax.lax.conv_general_dilated(
      images, kernel, (2, 2), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC')
    )

  # Output 4 x 5 x 5 x 5; each output element is a 3 * 3 * 2 dot product.
  assert flops.matmul_flops(conv, images, kernel) == 2 * (4 * 5 * 5 * 5) * 18


def _linear_chain(unroll):
  def loss(w, x):
    def step(x, _):
      return x @ w, None

    return jax.lax.scan(step, x, None, length=7, unroll=unroll)[0].sum()

  return jax.grad(loss)


def test_scan_counts_its_body_length_times_where_xla_counts_it_once():
  w, x = jnp.ones((16, 16)), jnp.ones((8, 16))
  # Forward x @ w, backward g @ w.T and x.T @ g: three 8x16x16 matmuls per step.
  exact = 7 * 3 * 2 * 8 * 16 * 16
  assert flops.matmul_flops(_linear_chain(False), w, x) == exact
  assert flops.matmul_flops(_linear_chain(True), w, x) == exact
  # XLA's cost analysis of the rolled loop sees one step: the reason for this count.
  assert flops.xla_flops(_linear_chain(False), w, x) < exact / 3


def test_dead_code_is_not_counted_and_cond_counts_its_costliest_branch():
  x = jnp.ones((8, 8))

  def dead(x):
    _ = x @ x
    return x.sum()

  assert flops.matmul_flops(dead, x) == 0

  def branch(p, x):
    return jax.lax.cond(p, lambda x: x @ x @ x, lambda x: x @ x, x)

  assert flops.matmul_flops(branch, True, x) == 2 * 2 * 8**3


def test_a_while_loop_with_matmuls_is_refused():
  def loop(x):
    return jax.lax.while_loop(
      lambda c: c[1] < 3, lambda c: (c[0] @ c[0], c[1] + 1), (x, 0)
    )

  with pytest.raises(ValueError, match='lax.scan'):
    flops.matmul_flops(loop, jnp.ones((4, 4)))


def _maml_step_flops(inner_steps, batching):
  model = jmeta.mlp([6], 3)
  estimator = jmeta.maml(
    model,
    jmeta.losses.cross_entropy,
    inner_steps=inner_steps,
    inner_learning_rate=0.1,
    batching=batching,
  )
  trainer = jmeta.make_meta_trainer(estimator, optax.adam(1e-3))
  x = jnp.ones((4, 5, 2))
  y = jnp.zeros((4, 5), jnp.int32)
  batch = jmeta.TaskBatch(x, y, x, y)
  state = trainer.init(model.init(jax.random.key(0), x[0]))
  return flops.matmul_flops(trainer.step, state, batch)


def test_meta_update_count_is_the_same_over_a_task_loop_and_linear_in_inner_steps():
  counts = [_maml_step_flops(s, 'vmap') for s in (1, 2, 3)]
  assert _maml_step_flops(2, 'map') == counts[1]
  # Second order: each extra inner step adds the same forward, backward and
  # backward-of-backward matmuls.
  assert counts[2] - counts[1] == counts[1] - counts[0] > 0


def test_readme_table_is_generated_from_the_committed_report(tmp_path):
  report = json.loads((ROOT / 'benchmarks/results/cpu_flops.json').read_text())
  readme = (ROOT / 'README.md').read_text()
  section = readme.split(tables.FLOPS_BEGIN, 1)[1].split(tables.FLOPS_END)[0]
  assert section == '\n' + tables.flops_section(report)
  peak = report['peak']['flop_per_s']
  for r in report['results']:
    achieved = r['matmul_flops'] / r['step_s']
    assert f'{r["matmul_flops"] / 1e9:.2f} |' in section
    assert f'{achieved / 1e9:.1f} | {100 * achieved / peak:.0f}% |' in section
  copy = tmp_path / 'README.md'
  copy.write_text(readme.replace(section, '\nstale\n'))
  tables.write_flops(str(copy), report)
  assert copy.read_text() == readme
  copy.write_text('no markers')
  with pytest.raises(ValueError, match='markers'):
    tables.write_flops(str(copy), report)


def test_the_default_cells_and_a_cell_subprocess_parse():
  # Each cell runs as `flops.py --single SPEC` with the default --cells, so a stale
  # default (the renamed 'maml++') failed every cell, not only the default run.
  assert flops.parse_args([]).cells == list(flops.DEFAULT_CELLS)
  assert flops.parse_args(['--single', 'protonet:60w5s5q:vmap:auto']).single


def test_cells_run_in_children_that_need_not_share_a_preallocated_gpu(
  tmp_path, monkeypatch
):
  # The parent keeps the device while its children time the cells; with JAX's
  # default preallocation on a GPU the children ran out of memory.
  # setenv first, so that the variable main sets is removed again afterwards.
  monkeypatch.setenv('XLA_PYTHON_CLIENT_PREALLOCATE', 'unset')
  monkeypatch.delenv('XLA_PYTHON_CLIENT_PREALLOCATE')
  seen = []

  def child(cmd, cell, timeout=None, env=None):
    seen.append((env or os.environ).get('XLA_PYTHON_CLIENT_PREALLOCATE'))
    return {**cell, 'error': 'not run'}

  monkeypatch.setattr(flops.harness, 'run_json', child)
  monkeypatch.setattr(
    flops,
    'measured_peak',
    lambda *a: {'flop_per_s': 1.0, 'size': 8, 'dtype': 'float32'},
  )
  flops.main(['--cells', 'maml:5w1s:auto:auto', '--out', str(tmp_path)])
  assert seen == ['false']
