"""Process-wide workarounds for XLA bugs in the installed jaxlib, applied on import.

jaxlib 0.10.2 and 0.11.0 hand CPU dots and reductions to YNNPACK fusions
(``__ynn_fusion``) by default, and these crash the process with a segmentation
fault on some shapes (jax-ml/jax#39257 and #40412; fixed upstream in XNNPACK after
0.10.2 was built). ProtoNet's training episode (60-way, 5-shot, 5 queries) is one
such shape: ``tests/xla_bugs/ynn_segfault.py`` is a 15-line pure-JAX reproduction
(2x2 max-pool, prototypes by a one-hot matmul, squared distances, gradient). jaxlib
0.10.1 does not fuse these ops and runs it.

``import jmeta`` therefore adds ``--xla_cpu_experimental_ynn_fusion_type=`` (no
YNNPACK fusions) to ``XLA_FLAGS`` on those jaxlib versions, before JAX starts its
backends. It leaves ``XLA_FLAGS`` alone when the flag is already there (the user's
choice wins) or ``JMETA_KEEP_XLA_FLAGS=1`` is set, and warns when JAX's backends
were started before ``import jmeta``, because XLA reads the flags only then.
``benchmarks/cpu_ynn_fusion.py`` measures what turning the fusions off costs.
"""

from __future__ import annotations

import os
import warnings

# Versions known to carry both the flag and the crash; the flag is passed only to
# these, because XLA aborts on a flag it does not know.
AFFECTED_JAXLIB = ('0.10.2', '0.11.0')
YNN_FLAG = '--xla_cpu_experimental_ynn_fusion_type'
OPT_OUT = 'JMETA_KEEP_XLA_FLAGS'


def needs_ynn_workaround(jaxlib_version: str, xla_flags: str, opt_out: str) -> bool:
  """Whether ``import jmeta`` should turn off XLA:CPU's YNNPACK fusions."""
  return (
    jaxlib_version in AFFECTED_JAXLIB
    and YNN_FLAG not in xla_flags
    and opt_out.strip() not in ('1', 'true', 'True')
  )


def _backends_started() -> bool:
  try:
    from jax._src import xla_bridge

    return bool(xla_bridge.backends_are_initialized())
  except (ImportError, AttributeError):  # a JAX without the query: assume not
    return False


def apply_workarounds() -> bool:
  """Adds the YNNPACK flag to ``XLA_FLAGS`` where needed; returns whether it did."""
  import jaxlib

  flags = os.environ.get('XLA_FLAGS', '')
  if not needs_ynn_workaround(jaxlib.__version__, flags, os.environ.get(OPT_OUT, '')):
    return False
  if _backends_started():
    warnings.warn(
      f'jaxlib {jaxlib.__version__} can crash with a segmentation fault in '
      'XLA:CPU YNNPACK fusions (jax-ml/jax#39257), and JAX started its backends '
      'before `import jmeta` could turn them off. Import jmeta before running any '
      f'JAX computation, or set XLA_FLAGS="{YNN_FLAG}=" yourself.',
      RuntimeWarning,
      stacklevel=3,
    )
    return False
  os.environ['XLA_FLAGS'] = f'{flags} {YNN_FLAG}='.strip()
  return True
