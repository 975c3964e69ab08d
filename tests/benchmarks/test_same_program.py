"""same_program.program_text: programs that differ only in where their source lies
compare equal; programs that compute something else do not."""

import jax
import jax.numpy as jnp
import same_program


def _sine_twice(x):
  return jnp.sin(x) * 2.0


def _sine_twice_written_otherwise(x):

  y = jnp.sin(x)  # other lines, another name: other metadata and frame tables
  return y * 2.0


def _cosine_twice(x):
  return jnp.cos(x) * 2.0


def _optimized(fn) -> str:
  return jax.jit(fn).lower(jnp.ones(3)).compile().as_text()


def test_only_source_locations_are_ignored():
  a = _optimized(_sine_twice)
  b = _optimized(_sine_twice_written_otherwise)
  assert a != b  # the raw texts differ: module names, metadata, frame tables
  assert same_program.program_text(a) == same_program.program_text(b)
  assert 'sine(' in same_program.program_text(a)
  assert 'metadata' not in same_program.program_text(a)
  other = same_program.program_text(_optimized(_cosine_twice))
  assert other != same_program.program_text(a)
