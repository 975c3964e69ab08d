#!/bin/bash
# The README's ablations of the CPU-budget run (issue 22), from the repository root:
#   bash experiments/neural_statistician/run_ablations.sh
# Each run is the CPU-budget command with the flags after its name; each writes
# results/neural_statistician/ablations/NAME/ (log.txt holds its output) and is
# skipped once it has results. Then every run's last checkpoint is tested under
# each classification rule (rules.json). The README's tables:
#   python -m experiments.neural_statistician.report results/neural_statistician/cpu_budget \
#       results/neural_statistician/ablations/{default,z1,c512,z1_alpha1,z1_9000,bn,area,area_grey,area_grey_aug,sample_dropout,sample_dropout_0.2,sample_dropout_nocount,grey_bn_dropout}
#   python -m experiments.neural_statistician.report --rules \
#       results/neural_statistician/ablations/{default,z1,c512,z1_alpha1,z1_9000,bn,area,area_grey,area_grey_aug,sample_dropout,sample_dropout_0.2,sample_dropout_nocount,grey_bn_dropout}
set -u
root=results/neural_statistician/ablations
runs=(
  "default --config.num_iterations=3000"
  "z1 --config.num_iterations=3000 --config.model.num_latent_layers=1"
  "c512 --config.num_iterations=3000 --config.model.context_size=512"
  "z1_alpha1 --config.num_iterations=3000 --config.model.num_latent_layers=1 --config.alpha_halve_every=3000"
  "z1_9000 --config.num_iterations=9000 --config.model.num_latent_layers=1"
  "bn --config.num_iterations=3000 --config.model.batch_norm=True"
  "area --config.num_iterations=3000 --config.data.resize=area"
  "area_grey --config.num_iterations=3000 --config.data.resize=area --config.data.binarize=False"
  "area_grey_aug --config.num_iterations=3000 --config.data.resize=area --config.data.binarize=False --config.data.augment_probability=0.5"
  "sample_dropout --config.num_iterations=3000 --config.model.sample_dropout=0.5"
  "sample_dropout_0.2 --config.num_iterations=3000 --config.model.sample_dropout=0.2"
  "sample_dropout_nocount --config.num_iterations=3000 --config.model.sample_dropout=0.5 --config.model.pool_count=False"
  "grey_bn_dropout --config.num_iterations=3000 --config.model.batch_norm=True --config.data.resize=area --config.data.binarize=False --config.model.sample_dropout=0.5 --config.model.pool_count=False"
)
for spec in "${runs[@]}"; do
  set -- $spec
  name=$1
  shift
  workdir=$root/$name
  [ -e "$workdir/results.json" ] && continue
  mkdir -p "$workdir"
  nice -n 19 python -m experiments.neural_statistician.main \
    --workdir="$workdir" "$@" >>"$workdir/log.txt" 2>&1
done
for spec in "${runs[@]}"; do
  set -- $spec
  workdir=$root/$1
  [ -e "$workdir/rules.json" ] && continue
  nice -n 19 python -m experiments.neural_statistician.rules "$workdir" \
    >>"$workdir/rules_log.txt" 2>&1
done
