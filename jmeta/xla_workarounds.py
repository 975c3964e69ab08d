"""A switch for XLA:CPU's YNNPACK fusions, which crash on some shapes in jaxlib 0.10.2.

jaxlib 0.10.2 and 0.11.0 hand CPU dots and reductions to YNNPACK fusions
(``__ynn_fusion``) by default, and these can end the process with a segmentation
fault (jax-ml/jax#39257 and #40412; fixed upstream in XNNPACK after 0.10.2 was
built). ProtoNet's training episode (60-way, 5-shot, 5 queries) hit one with
prototypes computed as a one-hot matmul: ``tests/xla_bugs/ynn_segfault.py``
reproduces it in 15 lines of JAX. jmeta's learners avoid that pattern
(``jmeta.metric.class_means`` is a segment sum), and
``tests/experiments/test_paper_shapes.py`` runs every Omniglot learner at its
paper's largest episodes with the defaults.

The fusions stay on by default because turning them off makes the gradient-based
learners' CPU meta-steps much slower (``benchmarks/results/cpu_ynn_fusion.md``). If your own
model hits the crash, call ``disable_ynn_fusions()`` before any JAX computation,
or run with ``XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=``.
"""

from __future__ import annotations

import os
import warnings

# Versions known to carry both the flag and the crash; the flag is passed only to
# these, because XLA aborts on a flag it does not know.
AFFECTED_JAXLIB = ('0.10.2', '0.11.0')
YNN_FLAG = '--xla_cpu_experimental_ynn_fusion_type'


def needs_ynn_flag(jaxlib_version: str, xla_flags: str) -> bool:
  """Whether ``disable_ynn_fusions`` should add the flag: an affected jaxlib, and
  ``XLA_FLAGS`` does not set it already (the user's own value wins)."""
  return jaxlib_version in AFFECTED_JAXLIB and YNN_FLAG not in xla_flags


def _backends_started() -> bool:
  try:
    from jax._src import xla_bridge

    return bool(xla_bridge.backends_are_initialized())
  except (ImportError, AttributeError):  # a JAX without the query: assume not
    return False


def disable_ynn_fusions() -> bool:
  """Turns XLA:CPU's YNNPACK fusions off for this process; returns whether it did.

  XLA reads ``XLA_FLAGS`` when JAX starts its backends, so call this before any JAX
  computation; afterwards it warns and changes nothing. On a jaxlib without the
  crash (or without the flag) it does nothing.
  """
  import jaxlib

  flags = os.environ.get('XLA_FLAGS', '')
  if not needs_ynn_flag(jaxlib.__version__, flags):
    return False
  if _backends_started():
    warnings.warn(
      'JAX has already started its backends, so turning off the YNNPACK fusions '
      'now has no effect. Call jmeta.xla_workarounds.disable_ynn_fusions() before '
      f'any JAX computation, or set XLA_FLAGS="{YNN_FLAG}=" before starting Python.',
      RuntimeWarning,
      stacklevel=2,
    )
    return False
  os.environ['XLA_FLAGS'] = f'{flags} {YNN_FLAG}='.strip()
  return True
