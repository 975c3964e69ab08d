"""Bandit baselines of RL^2's Table 1 (Duan et al., 2016, Sec. 3.1), in JAX.

A ``BanditPolicy`` chooses an arm from the per-arm counts of successes and
failures so far (``BanditCounts``) and the step; ``play_bandit`` runs one trial of
``pulls`` pulls on one task with ``lax.scan``, and ``bandit_returns`` vmaps it over
a stack of tasks (``jmeta.rl.sample_tasks``), all under one ``jit``.

* ``random_policy``: a uniformly random arm each pull.
* ``ucb1(c)``: ``argmax_i mu_i + c sqrt(2 log t / T_i)`` (Auer et al., 2002), with
  the counts started at one success and one failure (a Beta(1, 1) prior), as RL^2
  does: ``mu_i = (1 + s_i) / (2 + s_i + f_i)``, ``T_i = 2 + s_i + f_i`` and ``t``
  the 1-based index of the pull. ``c`` is tuned per setting in the paper.
* ``thompson_sampling``: an arm mean per arm from ``Beta(1 + s_i, 1 + f_i)``, then
  the best (Thompson, 1933).
* ``gittins_policy(table)``: the largest Gittins index ``table[s_i, f_i]``
  (``jmeta.rl.gittins.gittins_index_table``); ``index_policy`` is the same with a
  traced table.

Ties are broken uniformly at random (all arms tie at the first pull).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jmeta.rl.bandits import BanditTask
from jmeta.validation import check_positive_int, check_positive_real


class BanditCounts(NamedTuple):
  successes: jax.Array  # (num_arms,) int32
  failures: jax.Array  # (num_arms,) int32


class BanditPolicy(NamedTuple):
  """``choose(counts, t, key) -> arm`` with ``t`` the 0-based index of the pull."""

  name: str
  choose: Callable[[BanditCounts, jax.Array, jax.Array], jax.Array]


def argmax_random_ties(scores: jax.Array, key: jax.Array) -> jax.Array:
  """An index of a maximum of ``scores``, uniform over ties."""
  best = scores == jnp.max(scores)
  return jax.random.categorical(key, jnp.where(best, 0.0, -jnp.inf)).astype(jnp.int32)


def random_policy() -> BanditPolicy:
  def choose(counts: BanditCounts, t, key):
    del t
    return jax.random.randint(key, (), 0, counts.successes.shape[0], jnp.int32)

  return BanditPolicy('random', choose)


def ucb1_scores(counts: BanditCounts, t: jax.Array, c: float) -> jax.Array:
  """``mu_i + c sqrt(2 log t / T_i)`` with the Beta(1, 1) pseudo-counts (module doc)."""
  pulls = (counts.successes + counts.failures + 2).astype(jnp.float32)
  mean = (counts.successes + 1).astype(jnp.float32) / pulls
  step = jnp.asarray(t, jnp.float32) + 1.0
  return mean + c * jnp.sqrt(2.0 * jnp.log(step) / pulls)


def ucb1(c: float = 1.0) -> BanditPolicy:
  c = check_positive_real(c, 'c', allow_zero=True)

  def choose(counts: BanditCounts, t, key):
    return argmax_random_ties(ucb1_scores(counts, t, c), key)

  return BanditPolicy(f'ucb1(c={c:g})', choose)


def thompson_sampling() -> BanditPolicy:
  def choose(counts: BanditCounts, t, key):
    del t
    sample_key, tie_key = jax.random.split(key)
    a = (counts.successes + 1).astype(jnp.float32)
    b = (counts.failures + 1).astype(jnp.float32)
    return argmax_random_ties(jax.random.beta(sample_key, a, b), tie_key)

  return BanditPolicy('thompson', choose)


def index_policy(index: jax.Array, name: str = 'index') -> BanditPolicy:
  """Pulls the arm of largest ``index[successes, failures]`` (a traceable array, so
  a jitted function can take the table as an argument)."""

  def choose(counts: BanditCounts, t, key):
    del t
    return argmax_random_ties(index[counts.successes, counts.failures], key)

  return BanditPolicy(name, choose)


def gittins_policy(table: np.ndarray, name: str = 'gittins') -> BanditPolicy:
  """``index_policy`` on a Gittins table (``jmeta.rl.gittins.gittins_index_table``),
  which must cover every count a trial reaches (``successes + failures <= pulls -
  1``); its NaN entries (beyond the table) become -1."""
  table = np.asarray(table)
  if table.ndim != 2 or table.shape[0] != table.shape[1]:
    raise ValueError(
      f'table must be square (successes x failures), got shape {table.shape}.'
    )
  return index_policy(jnp.asarray(np.nan_to_num(table, nan=-1.0), jnp.float32), name)


def play_bandit(
  policy: BanditPolicy, task: BanditTask, key: jax.Array, pulls: int
) -> jax.Array:
  """The rewards ``(pulls,)`` of ``policy`` on one Bernoulli bandit task."""
  num_arms = task.means.shape[-1]
  zeros = jnp.zeros((num_arms,), jnp.int32)

  def one_pull(counts: BanditCounts, inputs):
    t, k = inputs
    choose_key, pull_key = jax.random.split(k)
    arm = policy.choose(counts, t, choose_key)
    reward = jax.random.bernoulli(pull_key, task.means[arm]).astype(jnp.int32)
    hit = jax.nn.one_hot(arm, num_arms, dtype=jnp.int32)
    counts = BanditCounts(
      counts.successes + hit * reward, counts.failures + hit * (1 - reward)
    )
    return counts, reward.astype(jnp.float32)

  steps = jnp.arange(pulls)
  _, rewards = jax.lax.scan(
    one_pull, BanditCounts(zeros, zeros), (steps, jax.random.split(key, pulls))
  )
  return rewards


def bandit_returns(
  policy: BanditPolicy, tasks: BanditTask, key: jax.Array, pulls: int
) -> jax.Array:
  """The total reward of one trial of ``pulls`` pulls on each task of the stack
  ``tasks`` (vmapped): shape ``(num_tasks,)``."""
  pulls = check_positive_int(pulls, 'pulls')
  keys = jax.random.split(key, tasks.means.shape[0])
  rewards = jax.vmap(lambda task, k: play_bandit(policy, task, k, pulls))(tasks, keys)
  return jnp.sum(rewards, axis=-1)
