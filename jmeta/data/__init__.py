"""Datasets and episode samplers: Omniglot and MNIST via tensorflow-datasets, N-way K-shot episodes."""

from jmeta.data.cache import TFDS_DATA_DIR_ENV
from jmeta.data.episodes import (
  ROTATIONS,
  EpisodeSampler,
  evaluation_keys,
  make_episode_sampler,
)
from jmeta.data.mnist import (
  MNIST_DIR_ENV,
  OPTIMIZEE_SPLIT_SEED,
  MNISTData,
  MNISTDataError,
  load_mnist,
  optimizee_split,
  optimizee_split_indices,
)
from jmeta.data.omniglot import (
  OMNIGLOT_DIR_ENV,
  PROTOCOLS,
  SPLITS,
  OmniglotData,
  OmniglotDataError,
  load_omniglot,
  load_split,
  protocol_rotation,
  split_names,
)

__all__ = [
  'MNISTData',
  'MNISTDataError',
  'MNIST_DIR_ENV',
  'OPTIMIZEE_SPLIT_SEED',
  'load_mnist',
  'optimizee_split',
  'optimizee_split_indices',
  'EpisodeSampler',
  'OMNIGLOT_DIR_ENV',
  'OmniglotData',
  'OmniglotDataError',
  'PROTOCOLS',
  'ROTATIONS',
  'SPLITS',
  'TFDS_DATA_DIR_ENV',
  'evaluation_keys',
  'load_omniglot',
  'load_split',
  'make_episode_sampler',
  'protocol_rotation',
  'split_names',
]
