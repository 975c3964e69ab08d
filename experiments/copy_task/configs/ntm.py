"""The NTM of the copy task (Graves et al., 2014, Sec. 4.1 and 4.6, Table 2).

An LSTM controller of 100 units, a 128 x 20 memory, one read and one write head,
shifts -1, 0, +1 (``jmeta.memory.ntm``'s defaults); 8-bit vectors, lengths 1..20.
RMSProp in the form of Graves (2013) (centered, decay 0.95, epsilon 1e-4 under the
square root) with momentum 0.9 at 1e-4, every gradient component clipped to
(-10, 10), as in Sec. 4.6. The paper counts training in sequences and gives no
batch size; loudinthecloud/pytorch-ntm trains on one sequence per update (50,000
updates; its README: most seeds converge in under 30,000), as here.
MarkPKCollier/NeuralTuringMachine uses 32 with Adam. 100,000 sequences here; the
paper's Figure 3 shows the NTM near zero cost by about 200,000. Evaluation: 100
sequences of each length 10..100 drawn with a fixed seed.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.model = 'ntm'
  config.ntm = ml_collections.ConfigDict(
    {
      'memory_slots': 128,
      'memory_width': 20,
      'controller_size': 100,
      'read_heads': 1,
      'write_heads': 1,
      'shift_width': 3,
    }
  )
  config.bits = 8
  config.min_length = 1
  config.max_length = 20
  config.batch_size = 1
  config.learning_rate = 1e-4
  # optax.rmsprop's arguments besides the learning rate.
  config.rmsprop = ml_collections.ConfigDict(
    {'decay': 0.95, 'eps': 1e-4, 'centered': True, 'momentum': 0.9}
  )
  config.clip_value = 10.0
  config.num_updates = 100_000
  config.log_every = 1_000

  config.eval = ml_collections.ConfigDict()
  config.eval.seed = 1_000_003  # a key stream disjoint from training's
  config.eval.lengths = (10, 20, 30, 40, 50, 60, 80, 100)
  config.eval.num_sequences = 100
  return config
