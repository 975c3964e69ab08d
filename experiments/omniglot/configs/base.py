"""Fields shared by every Omniglot config; the algorithm files fill in the rest."""

import ml_collections

SETTINGS = ('5w1s', '5w5s', '20w1s', '20w5s')


def parse_setting(setting: str) -> tuple[int, int]:
  """'20w5s' -> (20, 5)."""
  if setting not in SETTINGS:
    raise ValueError(
      f'unknown Omniglot setting {setting!r}; expected one of {SETTINGS}.'
    )
  n_way, k_shot = setting[:-1].split('w')
  return int(n_way), int(k_shot)


def trains_on_validation(config) -> bool:
  """Whether a run (a ConfigDict, or its config.json as a dict) trains on the train
  and validation characters together (``data.train_split='trainval'``); runs from
  before the field existed trained on 'train'."""
  return config.get('data', {}).get('train_split', 'train') == 'trainval'


def get_base_config(setting: str) -> ml_collections.ConfigDict:
  n_way, k_shot = parse_setting(setting)
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.algorithm = 'maml'
  config.setting = setting

  config.data = ml_collections.ConfigDict()
  config.data.protocol = 'maml'  # 'maml' (random character split) or 'vinyals'
  config.data.n_way = n_way
  config.data.k_shot = k_shot
  config.data.q_query = k_shot  # MAML samples 2K images per class: K support, K query
  # 'train', or 'trainval': train on the validation characters too (no validation).
  config.data.train_split = 'train'

  config.model = ml_collections.ConfigDict()
  config.model.variant = 'strided'  # MAML's Omniglot Conv4
  config.model.filters = 64
  config.model.conv_impl = 'auto'
  # 'bfloat16': compute in bfloat16 with float32 params, gradients and loss
  # (jmeta.models.mixed_precision); float32 accumulation of every product.
  config.model.compute_dtype = 'float32'
  # Precision of float32 matmuls and convolutions (jax_default_matmul_precision):
  # 'default' lets XLA choose (TF32 on an Ampere or Hopper GPU; full float32 on a
  # CPU), 'highest' asks for full float32 everywhere.
  config.model.matmul_precision = 'default'
  # MAML's reference network (cbfinn/maml) differs in three ways: its batch norm
  # has no scale and epsilon 1e-3, and its Omniglot head is drawn from a standard
  # normal. With inner_adapts = 'all_but_batch_norm_offsets' (its batch-norm
  # offsets are trained by the outer update only) all four match it.
  config.model.batch_norm_scale = True
  config.model.batch_norm_eps = 1e-5
  config.model.head_init = 'glorot_uniform'  # or 'normal'
  # How the blocks are drawn (jmeta.models.layers.conv_block_init): 'torch_2017' is
  # the PyTorch initialisation of the 2017 reference codes (ProtoNet's): batch-norm
  # scales from U(0, 1), conv weights and biases from U(+-1/sqrt(fan_in)).
  config.model.block_init = 'glorot_uniform'

  config.meta_batch_size = 32
  config.batching = 'auto'
  config.chunk_size = 8  # used with batching='chunked'
  # Recompute each inner step on the backward pass instead of storing it
  # (maml, fomaml, meta_sgd, anil, maml_plus_plus); the gradient is unchanged.
  config.remat = False
  config.inner_steps = 1
  # MAML's reference code sums the loss over the N classes (its loss is divided by K
  # only); jmeta's cross-entropy is a mean over the N*K examples, so MAML's rate alpha
  # becomes alpha * N here.
  config.inner_learning_rate = 0.4 * n_way
  config.inner_optimizer = 'sgd'  # 'sgd' or 'adam' (beta1 = 0, as Reptile)
  # Keep the inner optimizer's state from task to task and update to update, and
  # start test-time adaptation from it, instead of a fresh state per task (Reptile's
  # reference code; jmeta.gradient_learner). Tasks then run in order on one device.
  config.persistent_inner_state = False
  # The leaves the inner loop adapts (MAML and first-order MAML): 'all' or
  # 'all_but_batch_norm_offsets' (jmeta.models.excluding_batch_norm_offsets).
  config.inner_adapts = 'all'
  config.outer_optimizer = 'adam'  # 'adam' or 'sgd'
  config.outer_learning_rate = 1e-3
  # Clip the meta-gradient to this global norm before the outer step (0: never).
  config.outer_clip_norm = 0.0
  config.outer_schedule = 'constant'  # 'linear' (to 0), 'cosine' or 'step'
  config.num_iterations = 60_000

  config.log_every = 100
  config.checkpoint_every = 1_000
  config.eval_every = 2_000
  # Stop once this many validations in a row plus one have not lowered the
  # validation loss (0: never; ProtoNet's reference rule, train.early_stopping).
  config.early_stopping_patience = 0

  # Every compare_every iterations (0: never), log to compare.jsonl how first-order
  # MAML, Reptile, iMAML and MAML++ meta-gradients agree with exact second-order MAML on a
  # fixed training batch, at the trained params (learners that train the Conv4's own
  # params: train.check_comparable).
  config.compare_every = 0
  config.compare = ml_collections.ConfigDict()
  config.compare.imaml_regularization = 1.0
  # MAML++ is compared at iteration 0 of a multi-step-loss annealing this long.
  config.compare.maml_plus_plus_anneal_iterations = 5_000

  config.eval = ml_collections.ConfigDict()
  config.eval.seed = 1_000_003
  config.eval.val_episodes = 200
  # Fresh validation episodes at each validation (seed + step) instead of the same.
  config.eval.val_resample = False
  config.eval.test_episodes = (600, 1000)
  # More K of the same N tested on the final params (e.g. (5,) after a 5w1s run):
  # where the paper trains one learner for several shots (Reptile's 1- and 5-shot
  # runs train alike). Their results go under 'test_extra_shots'.
  config.eval.extra_k_shots = ()
  config.eval.inner_steps = 3
  config.eval.episodes_per_call = 100
  # How test episodes are batched ('auto', 'vmap', 'map', 'chunked'); '' batches
  # them as training does (config.batching).
  config.eval.batching = ''
  return config
