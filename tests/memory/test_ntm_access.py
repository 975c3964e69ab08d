"""The NTM memory's step against a numpy reference written from Graves et al. (2014)."""

import numpy as np
import pytest

from jmeta import memory


def numpy_address(mem, previous, key, beta, gate, shifts, gamma, eps=1e-8):
  rows = mem / np.sqrt(np.sum(mem**2, axis=1, keepdims=True) + eps)
  sims = rows @ (key / np.sqrt(np.sum(key**2) + eps))
  content = np.exp(beta * sims) / np.exp(beta * sims).sum()
  gated = gate * content + (1 - gate) * previous
  n, half = len(gated), len(shifts) // 2
  shifted = np.array(
    [
      sum(gated[(i - d) % n] * shifts[d + half] for d in range(-half, half + 1))
      for i in range(n)
    ]
  )
  return shifted**gamma / np.sum(shifted**gamma)


def random_heads(rng, heads, width, shift_width):
  return memory.NTMHeads(
    key=rng.normal(size=(heads, width)),
    strength=rng.uniform(0.5, 3.0, size=heads),
    gate=rng.uniform(size=heads),
    shift=rng.dirichlet(np.ones(shift_width), size=heads),
    sharpen=rng.uniform(1.0, 3.0, size=heads),
  )


def test_step_writes_then_reads_like_the_numpy_reference(x64):
  rng = np.random.default_rng(0)
  slots, width, n_read, n_write = 6, 3, 2, 2
  access = memory.ntm_access(slots, width, n_read, n_write, shift_width=3)
  state = memory.NTMState(
    memory=rng.normal(size=(slots, width)),
    read_weights=rng.dirichlet(np.ones(slots), size=n_read),
    write_weights=rng.dirichlet(np.ones(slots), size=n_write),
  )
  read, write = (random_heads(rng, h, width, 3) for h in (n_read, n_write))
  erase = rng.uniform(size=(n_write, width))
  add = rng.normal(size=(n_write, width))
  reads, new = access.update(state, read, write, erase, add)

  ww = np.stack(
    [
      numpy_address(state.memory, state.write_weights[h], *(f[h] for f in write))
      for h in range(n_write)
    ]
  )
  keep = np.ones((slots, width))
  for h in range(n_write):
    keep *= 1 - np.outer(ww[h], erase[h])
  mem = state.memory * keep + sum(np.outer(ww[h], add[h]) for h in range(n_write))
  wr = np.stack(
    [
      numpy_address(mem, state.read_weights[h], *(f[h] for f in read))
      for h in range(n_read)
    ]
  )
  np.testing.assert_allclose(new.write_weights, ww, rtol=1e-10)
  np.testing.assert_allclose(new.memory, mem, rtol=1e-10)
  np.testing.assert_allclose(new.read_weights, wr, rtol=1e-10)
  np.testing.assert_allclose(reads, wr @ mem, rtol=1e-10)


@pytest.mark.parametrize(
  'kwargs, message',
  [
    ({'shift_width': 4}, 'shift_width must have an odd number'),
    ({'shift_width': 7}, 'shift_width=7 exceeds memory_slots=6'),
    ({'read_heads': 0}, 'read_heads must be a positive int'),
  ],
)
def test_bad_arguments_raise(kwargs, message):
  with pytest.raises(ValueError, match=message):
    memory.ntm_access(**({'memory_slots': 6, 'memory_width': 3} | kwargs))


def test_heads_of_the_wrong_shape_raise():
  rng = np.random.default_rng(0)
  access = memory.ntm_access(6, 3, 1, 1, shift_width=3)
  heads = random_heads(rng, 1, 3, 5)  # five shift offsets for a width-3 memory
  with pytest.raises(ValueError, match=r'read.shift must have shape \(1, 3\)'):
    access.update(access.init(), heads, heads, np.ones((1, 3)), np.ones((1, 3)))
