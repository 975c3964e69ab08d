"""The LSTM optimizer on an MNIST MLP (Andrychowicz et al., 2016, Sec. 3.2).

The optimizee: an MLP with one hidden layer of 20 sigmoid units, softmax
cross-entropy, minibatches of 128 images, 100 steps, weights and biases drawn
N(0, 0.01^2) (the authors' released code). The LSTM rule (two layers of 20, the
paper's preprocessing and 0.1 output scale) is meta-trained on unrolls of 100 steps
in truncations of 20 with truncated backprop, the meta-loss the mean minibatch loss
over the steps, and, as in the paper, without second derivatives through the
optimizee (d grad_t / d phi = 0: ``first_order``).

Images: the MNIST *test* partition (the only one on our machines), split by
``jmeta.data.optimizee_split``: 8,000 images the optimizees train on and 2,000
held out (seed ``OPTIMIZEE_SPLIT_SEED``, not stratified). This is not the paper's
60k/10k protocol. Set ``$JMETA_MNIST_DIR`` (or ``--config.mnist.idx_dir``) to the
IDX folder; with the official four files the loader also reads the training
partition, though this experiment always uses the split above.

Settings (``--config=.../mnist.py:<setting>``): ``base`` (the above), and the
paper's generalisation tests, which meta-train on ``base`` and test (and tune the
baselines) on another problem: ``steps200`` (200 steps), ``hidden40`` (40 hidden
units), ``two_layers`` (two hidden layers of 20) and ``relu`` (ReLU units).

Not stated by the paper, so chosen here: 16 problems per meta-step, Adam at 3e-3
cosine-decayed to 3e-4 with the meta-gradient clipped to global norm 1, 2,000
meta-steps. Baselines (SGD, momentum 0.9, NAG 0.9, RMSprop, Adam; optax) each get
the rate of a grid 1e-4..10 (4 per decade) with the lowest mean minibatch loss after
the test unroll on 128 problems; the test is 256 held-out problems (new inits and
minibatch streams), with the loss on all 8,000 training images and on the 2,000
held-out images after the last step.
"""

import ml_collections

from experiments.learned_optimizer.configs import default

SETTINGS = {
  'base': {},
  'steps200': {'steps': 200},
  'hidden40': {'hidden_sizes': (40,)},
  'two_layers': {'hidden_sizes': (20, 20)},
  'relu': {'activation': 'relu'},
}


def get_config(setting: str = 'base') -> ml_collections.ConfigDict:
  if setting not in SETTINGS:
    raise ValueError(f'setting must be one of {sorted(SETTINGS)}, got {setting!r}.')
  config = default.get_config()
  config.task = 'mnist'
  config.first_order = True
  config.num_tasks = 16
  config.num_updates = 2_000
  config.log_every = 10
  config.checkpoint_every = 100

  config.mnist = ml_collections.ConfigDict()
  config.mnist.hidden_sizes = (20,)
  config.mnist.activation = 'sigmoid'
  config.mnist.batch_size = 128
  config.mnist.idx_dir = ''  # '' reads $JMETA_MNIST_DIR
  config.mnist.data_dir = ''  # '' reads $JMETA_TFDS_DATA_DIR, then TFDS's default

  config.tune.num_tasks = 128
  config.eval.num_tasks = 256
  # The tested problem, when it differs from the meta-trained one (0 / () / '':
  # the same).
  config.eval.steps = 0
  config.eval.hidden_sizes = ()
  config.eval.activation = ''
  config.eval.update(SETTINGS[setting])
  return config
