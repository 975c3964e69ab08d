"""The neural statistician on Omniglot (Edwards & Storkey, 2017), CPU-sized.

  python -m experiments.neural_statistician.main \
      --workdir=results/neural_statistician/cpu_budget [--config.num_iterations=4000]

``default.py:smoke`` is a seconds-long run with tiny widths, for tests.

Data: sets of 5 drawings of one character (the paper's sample size), from the 1,200
background characters of Vinyals et al.'s split (jmeta's ``vinyals`` train + val)
with each 90-degree rotation a class of its own (4,800 classes), dynamically
binarised; the 423 test characters are held out for the lower bound, the samples
and the few-shot episodes.

What is smaller than the paper and its reference code (conormdurkan/
neural-statistician), to fit a CPU: the encoder is two stages of 3x3 convolutions
with 16 and 32 channels (the reference: three stages of 64, 128, 256, with batch
norm); the decoder upsamples by sub-pixel convolutions (the reference: transposed
convolutions, 256 to 64 channels); c has 64 dimensions (512), every dense layer
128 units (256); no batch normalisation anywhere; 3 z layers of 16 dimensions as
in the paper (the reference code: 1); batches of 16 sets (32).

Training follows the reference code: Adam at 1e-3, every gradient entry clipped to
[-0.5, 0.5], and the loss -[(1 + a) R - KL / (1 + a)] with a = 1 halved every
epoch (here every ``alpha_halve_every`` updates, about one pass over the
background characters' 4,800 sets of 5 at batch 16).
"""

import ml_collections


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  if arg not in ('', 'smoke'):
    raise ValueError(f"config argument must be '' or 'smoke', got {arg!r}.")
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.data = ml_collections.ConfigDict()
  config.data.protocol = 'vinyals'
  config.data.train_splits = ('train', 'val')  # 1028 + 172 = 1200 characters
  config.data.set_size = 5
  config.data.binarize = True

  config.model = ml_collections.ConfigDict()
  config.model.channels = (16, 32)
  config.model.features = 128
  config.model.hidden = 128
  config.model.context_size = 64
  config.model.latent_size = 16
  config.model.num_latent_layers = 3
  config.model.residual_layers = 2
  config.model.min_std = 1e-3

  config.batch_size = 16
  config.learning_rate = 1e-3
  config.gradient_clip = 0.5  # each entry, as the reference code's clamp
  config.alpha_initial = 1.0
  config.alpha_halve_every = 300
  config.num_iterations = 90_000
  # The reference code's budget: 300 epochs of ~300 updates (9,600 sets of 32).
  config.paper_iterations = 90_000
  config.log_every = 50
  config.checkpoint_every = 500

  config.eval = ml_collections.ConfigDict()
  # Test episodes from evaluation_keys(seed + 1, n), the keys the Omniglot
  # experiment's test uses, with its metric learners' 5 queries per class.
  config.eval.seed = 1_000_003
  config.eval.settings = ('5w1s', '5w5s', '20w1s', '20w5s')
  config.eval.num_episodes = 600
  config.eval.q_query = 5
  config.eval.episodes_per_call = 50
  # The lower bound on every test character's 4 sets of 5 drawings, averaged over
  # this many draws of c and z per set.
  config.eval.elbo_draws = 4
  config.eval.sets_per_call = 128
  config.eval.grid_characters = 8
  config.eval.grid_samples = 10

  if arg == 'smoke':
    m = config.model
    m.channels, m.features, m.hidden = (4,), 16, 16
    m.context_size, m.latent_size, m.num_latent_layers = 8, 4, 2
    m.residual_layers = 1
    config.batch_size = 4
    config.num_iterations = 6
    config.paper_iterations = 90_000
    config.alpha_halve_every = 2
    config.log_every = 2
    config.checkpoint_every = 4
    config.eval.settings = ('5w1s',)
    config.eval.num_episodes = 4
    config.eval.q_query = 1
    config.eval.episodes_per_call = 2
    config.eval.elbo_draws = 1
    config.eval.sets_per_call = 1024
    config.eval.grid_characters = 2
    config.eval.grid_samples = 3
  return config
