"""The neural statistician on Omniglot (Edwards & Storkey, 2017), CPU-sized.

  python -m experiments.neural_statistician.main \
      --workdir=results/neural_statistician/cpu_budget [--config.num_iterations=4000]

``default.py:smoke`` is a seconds-long run with tiny widths, for tests.
``default.py:reference`` has the reference code's networks and batch size (see
below): sized for a GPU (its FLOPs per update:
``benchmarks/results/neural_statistician_flops.md``).

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

``reference``: three stages of three 3x3 convolutions with 64, 128 and 256
channels and the flattened 256 x 4 x 4 map as h, c of 512 dimensions, dense layers
of 256 with residual blocks of 3, one z layer of 16, batch norm everywhere
(running averages at test, as the reference's ``model.eval()``), batches of 32
sets. What still differs from the reference: the decoder upsamples by sub-pixel
convolutions and crops 8 to 7 (the reference: transposed convolutions, and a
valid convolution from 16 to 14), and its first map has a batch norm and an ELU
(the reference: neither); stds are ``min_std + softplus`` (the reference:
exp of half a log-variance); the statistic network's last layers are a residual
block like the other Gaussian networks' (the reference: two plain layers);
90-degree rotations are still new classes. Its data are the reference's: greyscale
images, not binarised (``data.resize='area'``, ``data.binarize=False``; the
reference's own 28x28 images come from a resize that is not published), and half
the sets flipped and turned by a random angle (``data.augment_probability=0.5``,
drawn afresh each update, where the reference made one fixed copy). The other
configs keep the binary images of the other Omniglot experiments, dynamically
binarised, without augmentation.

Training follows the reference code: Adam at 1e-3, every gradient entry clipped to
[-0.5, 0.5], and the loss -[(1 + a) R - KL / (1 + a)] with a = 1 halved every
epoch (here every ``alpha_halve_every`` updates, about one pass over the
background characters' 4,800 sets of 5 at batch 16).
"""

import ml_collections
from ml_collections import config_dict


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  if arg not in ('', 'smoke', 'reference'):
    raise ValueError(
      f"config argument must be '', 'smoke' or 'reference', got {arg!r}."
    )
  # resize='area' gives grey levels (dynamically binarised in training), like the
  # reference code's 28x28 greyscale Omniglot; 'maml' keeps the other experiments'
  # binary images (see jmeta.data.omniglot).
  data = dict(protocol='vinyals', set_size=5, binarize=True, resize='maml')
  # augment_probability: the share of training sets flipped and turned by a random
  # angle as the reference code's augmentation does (it uses 1/2; see train.py).
  data['augment_probability'] = 0.0
  data['train_splits'] = ('train', 'val')  # 1028 + 172 = 1200 characters
  model = dict(channels=(16, 32), features=128, hidden=128, context_size=64)
  model.update(latent_size=16, num_latent_layers=3, residual_layers=2, min_std=1e-3)
  model.update(convs_per_stage=2, decoder_convs_per_stage=0, batch_norm=False)
  # None: q(c | D) from the plain mean (the paper); a probability: the reference
  # code's sample dropout (jmeta.neural_statistician), which it switches off.
  model['sample_dropout'] = config_dict.placeholder(float)
  model['pool_count'] = True  # with sample dropout: q(c | D) sees the number pooled
  # Test episodes from evaluation_keys(seed + 1, n), the keys the Omniglot
  # experiment's test uses, with its metric learners' 5 queries per class. The
  # lower bound: every test character's 4 sets of 5 drawings, averaged over
  # elbo_draws draws of c and z per set.
  evaluation = dict(seed=1_000_003, settings=('5w1s', '5w5s', '20w1s', '20w5s'))
  evaluation.update(num_episodes=600, q_query=5, episodes_per_call=50)
  evaluation.update(elbo_draws=4, sets_per_call=128)
  evaluation.update(grid_characters=8, grid_samples=10)
  config = ml_collections.ConfigDict(
    dict(seed=0, data=data, model=model, eval=evaluation, batch_size=16)
  )
  # Adam, each gradient entry clipped as the reference code's clamp, and the
  # weight a of the bound halved every alpha_halve_every updates.
  config.update(learning_rate=1e-3, gradient_clip=0.5)
  config.update(alpha_initial=1.0, alpha_halve_every=300)
  # paper_iterations: the reference code's budget, 300 epochs of ~300 updates
  # (9,600 sets of 32), an estimate from its data loader.
  config.update(num_iterations=90_000, paper_iterations=90_000)
  config.update(log_every=50, checkpoint_every=500)
  if arg == 'reference':
    config.model.update(channels=(64, 128, 256), features=None, hidden=256)
    config.model.update(context_size=512, num_latent_layers=1, residual_layers=3)
    config.model.update(convs_per_stage=3, decoder_convs_per_stage=2, batch_norm=True)
    config.data.update(resize='area', binarize=False, augment_probability=0.5)
    # The reference's epoch, 9,600 sets at batch 32, is 300 updates: alpha still
    # halves every 300.
    config.batch_size = 32
  if arg == 'smoke':
    config.model.update(channels=(4,), features=16, hidden=16, context_size=8)
    config.model.update(latent_size=4, num_latent_layers=2, residual_layers=1)
    config.update(batch_size=4, num_iterations=6, alpha_halve_every=2)
    config.update(log_every=2, checkpoint_every=4)
    config.eval.update(settings=('5w1s',), num_episodes=4, q_query=1)
    config.eval.update(episodes_per_call=2, elbo_draws=1, sets_per_call=1024)
    config.eval.update(grid_characters=2, grid_samples=3)
  return config
