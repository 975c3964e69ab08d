"""Gittins indices of Bernoulli arms under a Beta prior, by calibration.

An arm in posterior state ``Beta(a, b)`` pays 1 with probability ``p = a / (a + b)``
and moves to ``(a + 1, b)`` or ``(a, b + 1)``. Its Gittins index at discount
``gamma`` is the rate ``lambda`` of a known arm that makes a player indifferent
between the two (Gittins, 1979; Gittins, Glazebrook & Weber, 2011, Ch. 8):

  V(a, b; lam) = max(lam / (1 - gamma),
                     p + gamma [p V(a + 1, b; lam) + (1 - p) V(a, b + 1; lam)]),

and ``G(a, b)`` is the ``lam`` at which both branches are equal at ``(a, b)``. The
dynamic programme runs backwards from a truncation depth ``a + b = depth + 2``
where no more learning is assumed (``V = max(lam, p) / (1 - gamma)``), as in the
calibration method of Gittins et al. (2011, Sec. 8.4) and Edwards' ``gittins``
package. Continuing is optimal at ``(a, b)`` exactly when ``G(a, b) > lam``, and the
advantage of continuing, ``Q(a, b; lam) - lam / (1 - gamma)``, is convex, piecewise
linear and strictly decreasing in ``lam``; so one DP per ``lam`` of a grid brackets
every state's index at once, and linear interpolation of that advantage between
the two grid points around its zero gives the index (instead of a bisection per
state, which would repeat the DP per state).

This is an offline table (numpy, float64); the bandit policies that read it run in
JAX (``jmeta.rl.bandit_baselines.gittins_policy``).
"""

from __future__ import annotations

import numpy as np

from jmeta.validation import check_positive_int


def _check_discount(discount: float) -> float:
  discount = float(discount)
  if not 0.0 < discount < 1.0:
    raise ValueError(
      f'discount must be in (0, 1), got {discount}; the finite-horizon problem '
      'of n pulls is usually approximated with a discount near 1 - 1/n.'
    )
  return discount


def gittins_index_table(
  discount: float,
  max_pulls: int,
  *,
  depth: int | None = None,
  grid_size: int = 512,
  chunk: int = 32,
) -> np.ndarray:
  """Gittins indices ``G[s, f]`` of a Bernoulli arm with a Beta(1, 1) prior after
  ``s`` successes and ``f`` failures (posterior ``Beta(1 + s, 1 + f)``), for all
  ``s + f <= max_pulls``; other entries are NaN.

  ``depth``: the truncation ``s + f`` of the DP (default ``max_pulls`` plus the
  number of steps after which ``discount**steps < 1e-3``, at most ``max_pulls +
  4000``). ``grid_size``: the number of calibration rates in (0, 1) whose DPs
  bracket each index; the index is the zero of the interpolated advantage.
  """
  discount = _check_discount(discount)
  max_pulls = check_positive_int(max_pulls, 'max_pulls')
  grid_size = check_positive_int(grid_size, 'grid_size')
  if depth is None:
    horizon = int(np.ceil(np.log(1e-3) / np.log(discount)))
    depth = max_pulls + min(horizon, 4000)
  if depth < max_pulls:
    raise ValueError(f'depth ({depth}) must be at least max_pulls ({max_pulls}).')
  scale = 1.0 / (1.0 - discount)
  # At rate 0 continuing is optimal in every state and at rate 1 retiring is, so
  # each state's advantage changes sign exactly once on this grid.
  rates = np.linspace(0.0, 1.0, grid_size + 1)
  # advantage[k][m] holds Q - lam * scale on diagonal m (s + f = m), index s.
  table = np.full((max_pulls + 1, max_pulls + 1), np.nan)
  prev_adv = None
  prev_rate = None
  for start in range(0, grid_size + 1, chunk):
    lam = rates[start : start + chunk][:, None]
    adv = _advantages(lam, discount, scale, depth, max_pulls)
    for m in range(max_pulls + 1):
      a = adv[m]  # (chunk, m + 1)
      if prev_adv is not None:
        a = np.concatenate([prev_adv[m][-1:], a], axis=0)
        lams = np.concatenate([prev_rate[-1:], lam[:, 0]])
      else:
        lams = lam[:, 0]
      _interpolate_zeros(a, lams, table, m)
    prev_adv, prev_rate = adv, lam[:, 0]
  return table


def _advantages(lam, discount, scale, depth, max_pulls):
  """For each rate in ``lam`` (shape (K, 1)), the advantage of continuing
  ``Q - lam * scale`` on each diagonal ``s + f = m <= max_pulls``."""
  n = depth
  s = np.arange(n + 1)
  p = (1.0 + s) / (n + 2.0)
  value = np.maximum(lam, p) * scale  # (K, n + 1) at s + f = depth
  out = [None] * (max_pulls + 1)
  for m in range(n - 1, -1, -1):
    s = np.arange(m + 1)
    p = (1.0 + s) / (m + 2.0)
    q = p + discount * (p * value[:, 1 : m + 2] + (1.0 - p) * value[:, : m + 1])
    retire = lam * scale
    if m <= max_pulls:
      out[m] = q - retire
    value = np.maximum(retire, q)
  return out


def _interpolate_zeros(adv, lams, table, m):
  """Writes into ``table`` the interpolated zero of ``adv`` (rates x states of
  diagonal ``m``) for the states whose advantage changes sign inside ``lams``."""
  positive = adv > 0
  # The first rate at which continuing stops being optimal, per state.
  crossing = positive[:-1] & ~positive[1:]
  rows, cols = np.nonzero(crossing)
  if rows.size == 0:
    return
  y0, y1 = adv[rows, cols], adv[rows + 1, cols]
  x0, x1 = lams[rows], lams[rows + 1]
  table[cols, m - cols] = x0 + (x1 - x0) * y0 / (y0 - y1)


def horizon_discount(pulls: int) -> float:
  """``1 - 1 / pulls``: the discount whose expected lifetime is ``pulls``."""
  pulls = check_positive_int(pulls, 'pulls')
  if pulls < 2:
    raise ValueError(f'pulls must be at least 2 for a discount in (0, 1), got {pulls}.')
  return 1.0 - 1.0 / pulls
