"""N-way K-shot episodes from a device-resident image bank, as a pure function of a key.

An image bank is uint8 ``(characters, drawings, height, width)``, e.g. one Omniglot
split from ``jmeta.data.load_split``. ``make_episode_sampler`` returns
``sample(key, num_tasks) -> TaskBatch``; every episode is drawn on device with
``vmap`` (no Python work per episode), so it runs under ``jit``.

Example::

  images = jnp.asarray(load_split('vinyals', 'train'))
  sampler = make_episode_sampler(images, n_way=5, k_shot=1, q_query=15,
                                 rotation='classes')
  batch = jax.jit(sampler.sample, static_argnums=1)(jax.random.key(0), 32)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jmeta.tasks.batch import TaskBatch
from jmeta.validation import check_positive_int

ROTATIONS = ('none', 'classes', 'random')


class EpisodeSampler(NamedTuple):
  """An episode distribution.

  Attributes:
    sample: ``sample(key, num_tasks) -> TaskBatch``; inputs are float32 in [0, 1]
      shaped ``(tasks, n_way * shots, height, width, 1)``, labels int32 in
      ``[0, n_way)``, support and query ordered class-major.
    num_classes: the size of the class pool episodes draw from (characters, or
      characters * 4 with ``rotation='classes'``).
    sample_from: ``sample_from(images, key, num_tasks) -> TaskBatch``, the same
      function with the image bank as an argument. Use it inside your own
      ``jit`` (pass the bank in), since a ``jit`` around ``sample`` embeds the
      whole bank in the compiled program as a constant.
  """

  sample: Callable[[jax.Array, int], TaskBatch]
  num_classes: int
  sample_from: Callable[[jax.Array, jax.Array, int], TaskBatch] | None = None


def _rotate(images: jax.Array, quarter_turns: jax.Array) -> jax.Array:
  """Rotates ``images[..., h, w]`` by ``quarter_turns`` * 90 degrees (``np.rot90``).

  ``quarter_turns`` is a traced integer scalar in [0, 4); all four rotations are
  formed and one is selected, which is cheap for small images.
  """
  options = jnp.stack([jnp.rot90(images, r, axes=(-2, -1)) for r in range(4)])
  return options[quarter_turns]


def _sample_task(
  images: jax.Array,
  key: jax.Array,
  *,
  n_way: int,
  k_shot: int,
  q_query: int,
  rotation: str,
) -> TaskBatch:
  """One episode, without the task axis (a ``TaskBatch`` of unbatched fields)."""
  characters, drawings = images.shape[:2]
  pool = characters * 4 if rotation == 'classes' else characters
  class_key, draw_key, rot_key = jax.random.split(key, 3)
  classes = jax.random.choice(class_key, pool, (n_way,), replace=False)
  if rotation == 'classes':
    chars, turns = classes // 4, classes % 4
  else:
    chars = classes
    turns = jax.random.randint(rot_key, (n_way,), 0, 4)
  shots = k_shot + q_query
  noise = jax.random.uniform(draw_key, (n_way, drawings))
  draws = jnp.argsort(noise, axis=-1)[:, :shots]  # distinct drawings per class
  x = images[chars[:, None], draws]  # (n_way, shots, h, w)
  if rotation != 'none':
    x = jax.vmap(_rotate)(x, turns)
  x = x.astype(jnp.float32)[..., None] / 255.0
  labels = jnp.arange(n_way, dtype=jnp.int32)
  height, width = images.shape[2:]
  support = x[:, :k_shot].reshape(n_way * k_shot, height, width, 1)
  query = x[:, k_shot:].reshape(n_way * q_query, height, width, 1)
  return TaskBatch(
    support_inputs=support,
    support_targets=jnp.repeat(labels, k_shot),
    query_inputs=query,
    query_targets=jnp.repeat(labels, q_query),
  )


def make_episode_sampler(
  images: jax.Array,
  *,
  n_way: int,
  k_shot: int,
  q_query: int,
  rotation: str = 'none',
) -> EpisodeSampler:
  """N-way K-shot episodes with ``q_query`` query images per class.

  Args:
    images: uint8 ``(characters, drawings, height, width)``; pass a ``jnp`` array
      so the bank stays on device.
    n_way: classes per episode, drawn without replacement.
    k_shot: support images per class.
    q_query: query images per class, disjoint from that class's support images.
    rotation: ``'none'``; ``'classes'`` (Vinyals et al., 2016: every character
      rotated by 0/90/180/270 degrees is a class of its own, class ``c * 4 + r``
      being character ``c`` rotated by ``r * 90`` degrees as ``np.rot90``); or
      ``'random'`` (Finn et al., 2017: each sampled class gets one random
      rotation per task, shared by its support and query images).

  Returns:
    An ``EpisodeSampler`` whose ``sample(key, num_tasks)`` is pure and jittable
    (``num_tasks`` static). Its ``TaskBatch`` holds images as float32 in [0, 1]
    (the bank's bytes / 255), shaped ``(num_tasks, n_way * k_shot, height, width,
    1)`` for the support set and ``(num_tasks, n_way * q_query, height, width, 1)``
    for the query set, and labels as int32 in ``[0, n_way)``, shaped
    ``(num_tasks, n_way * k_shot)`` and ``(num_tasks, n_way * q_query)``, class-major
    (label ``c`` for the ``c``-th sampled class).

  Raises:
    ValueError: for a shape no episode can have, naming the problem.
  """
  if rotation not in ROTATIONS:
    raise ValueError(f'rotation must be one of {ROTATIONS}, got {rotation!r}.')
  for name, value in (('n_way', n_way), ('k_shot', k_shot), ('q_query', q_query)):
    check_positive_int(value, name)
  n_way, k_shot, q_query = int(n_way), int(k_shot), int(q_query)
  shape = tuple(np.shape(images))
  if len(shape) != 4:
    raise ValueError(
      f'images must be (characters, drawings, height, width), got shape {shape}.'
    )
  images = jnp.asarray(images)
  if images.dtype != jnp.uint8:
    raise ValueError(f'images must be uint8 in [0, 255], got {images.dtype}.')
  characters, drawings = shape[:2]
  num_classes = characters * 4 if rotation == 'classes' else characters
  if n_way > num_classes:
    raise ValueError(
      f'n_way={n_way} exceeds the {num_classes} classes available '
      f'({characters} characters, rotation={rotation!r}).'
    )
  if k_shot + q_query > drawings:
    raise ValueError(
      f'k_shot + q_query = {k_shot} + {q_query} = {k_shot + q_query} exceeds the '
      f'{drawings} drawings per class; support and query images must be distinct.'
    )
  if rotation != 'none' and shape[2] != shape[3]:
    raise ValueError(f'rotation={rotation!r} needs square images, got {shape[2:]}.')

  def sample_tasks(bank: jax.Array, key: jax.Array, num_tasks: int) -> TaskBatch:
    keys = jax.random.split(key, num_tasks)

    def one(task_key: jax.Array) -> TaskBatch:
      return _sample_task(
        bank, task_key, n_way=n_way, k_shot=k_shot, q_query=q_query, rotation=rotation
      )

    return jax.vmap(one)(keys)

  compiled = jax.jit(sample_tasks, static_argnums=2)

  def sample(key: jax.Array, num_tasks: int) -> TaskBatch:
    """``num_tasks`` episodes drawn from ``key``."""
    check_positive_int(num_tasks, 'num_tasks')
    return compiled(images, key, int(num_tasks))

  return EpisodeSampler(sample=sample, num_classes=num_classes, sample_from=compiled)


def evaluation_keys(seed: int, num_episodes: int) -> jax.Array:
  """``num_episodes`` fixed episode keys derived from ``seed``.

  Evaluating on ``jax.vmap``/a loop over these keys (one episode per key, e.g.
  ``sampler.sample(k, 1)``) gives the same episodes on every run; pair it with
  ``jmeta.mean_confidence_interval`` over at least 600 episodes.
  """
  check_positive_int(num_episodes, 'num_episodes')
  return jax.random.split(jax.random.key(seed), num_episodes)
