"""MANN with LRUA memory on one-shot Omniglot (Santoro et al., 2016, Sec. 4, Table 1).

Episodes: 5 classes drawn from the 1200 training characters, 10 distinct drawings
of each in a random order (50 steps), a random label per class per episode, input
[x_t, one_hot(y_{t-1})], cross-entropy at every step. Each class is rotated by a
random multiple of 90 degrees for the episode (the paper's extra classes made by
rotation) and each image is translated by up to 2 pixels along each axis (the
paper translates without saying how far; snowkylin/ntm shifts the 105 x 105
drawing by up to 10 pixels, about 2 at 20 x 20). Images are 20 x 20 as in the
paper, resized on device from jmeta's 28 x 28 bank (MAML's nearest-neighbour
downscale of the 105 x 105 drawings), not from the originals.

Model: LSTM controller of 200 units, 128 x 40 memory, 4 read heads, usage decay
0.95, writing the read key (the paper; both reference implementations write a
separate add vector: model.separate_values=True).

Optimiser: Adam at 1e-3 on batches of 16 episodes, as both reference
implementations run the one-shot task (tristandeleu/ntm-one-shot,
snowkylin/ntm); config.optimizer.name='rmsprop' gives RMSProp with decay 0.95 and
momentum 0.9. Training length: the paper's 100,000 episodes, i.e. 6,250 updates of
16 episodes (snowkylin/ntm runs 100,000 updates instead). Test: 1000 fixed
episodes of the 423 test characters, augmented as in training.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.model = ml_collections.ConfigDict()
  config.model.name = 'mann'  # a jmeta.memory factory: 'mann', 'lstm' or 'ntm'
  config.model.controller_size = 200
  config.model.memory_slots = 128
  config.model.memory_width = 40
  config.model.read_heads = 4
  config.model.gamma = 0.95
  config.model.separate_values = False

  config.data = ml_collections.ConfigDict()
  # The 'maml' protocol's train + val characters are a random 1200 of the 1623,
  # its test split the other 423, as the paper's 1200 / 423 (a different draw).
  config.data.protocol = 'maml'
  config.data.train_splits = ('train', 'val')
  config.data.test_split = 'test'
  config.data.num_classes = 5
  config.data.labels = 'one_hot'  # or 'string' (Table 2; configs/strings.py)
  config.data.instances = 10
  config.data.image_size = 20
  config.data.max_shift = 2
  config.data.rotate = True

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = 'adam'  # or 'rmsprop'
  config.optimizer.learning_rate = 1e-3
  config.optimizer.rmsprop_decay = 0.95
  config.optimizer.momentum = 0.9  # rmsprop only
  config.optimizer.clip_norm = 0.0  # global-norm clipping; 0: none

  config.batch_size = 16
  config.train_episodes = 100_000  # updates = ceil(train_episodes / batch_size)
  config.log_every = 100  # updates
  config.checkpoint_every = 500  # updates

  config.eval = ml_collections.ConfigDict()
  config.eval.seed = 1_000_003  # a key stream disjoint from training's
  config.eval.num_episodes = 1_000
  config.eval.episodes_per_call = 250
  return config
