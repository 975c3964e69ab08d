#!/bin/bash
# The README's CPU-budget runs, one after the other, from the repository root:
#   bash experiments/neural_processes/run_cpu_budget.sh
# Each run writes results/neural_processes/<model>_<family>/ (log.txt holds its
# output); a stopped run resumes from its checkpoint when the script is run again.
set -u
run() {  # model family iterations
  local workdir="results/neural_processes/$1_$2"
  [ -e "$workdir/results.json" ] && return 0
  mkdir -p "$workdir"
  nice -n 19 python -m experiments.neural_processes.main \
    --config="experiments/neural_processes/configs/$1.py:$2" \
    --workdir="$workdir" --config.num_iterations="$3" >>"$workdir/log.txt" 2>&1
}
for model in anp np cnp; do run "$model" gp_random 4000; done
for model in anp np cnp; do run "$model" gp_fixed 2500; done
for model in anp np cnp; do run "$model" sinusoid 2500; done
run maml sinusoid 5000
