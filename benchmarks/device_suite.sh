#!/usr/bin/env bash
# Issue 6's GPU checks, prepared to run in one call of the device tool: at most 9
# minutes on an H100/H200 (the timeouts sum to 530 s), each step under its own
# timeout so that one slow cell cannot take the rest with it. From the repository root:
#
#   OUT=/some/dir bash benchmarks/device_suite.sh
#
# It needs jax (with its GPU plugin), flax, optax, chex and matplotlib, and imports
# jmeta from this checkout (PYTHONPATH), so nothing is installed. It writes
# <backend>_meta_step, <backend>_flops and <backend>_dispatch (.json and .md) and
# device_suite.log into $OUT, which must hold no earlier report (the device tool's
# $OUT starts empty): copy them to benchmarks/results/ and regenerate the README
# tables from there.
#
#   PYTHON               the interpreter (default python3)
#   NOMINAL_PEAK_TFLOPS  the datasheet peak for flops.py (default 494.7: the
#                        H100/H200 SXM dense TF32 figure, what XLA uses for float32
#                        matmuls on Hopper by default)
set -uo pipefail
out=${OUT:?set OUT to an empty folder for the reports}
if compgen -G "$out/*_meta_step.json" >/dev/null; then
  echo "$out already holds a meta_step report; give OUT an empty folder" >&2
  exit 2
fi
py=${PYTHON:-python3}
nominal=${NOMINAL_PEAK_TFLOPS:-494.7}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
mkdir -p "$out"
{
  date -u
  "$py" -c 'import jax; print("jax", jax.__version__, jax.devices())'
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  # The <= 5 ms target (maml 5w1s) and the GPU default: XLA's convolutions against
  # patches plus a matmul, both vmapped, for every gradient-based estimator in both
  # settings. (The first call, on 2026-12-04, ran patches for maml only: 2 ms a step
  # at 5w1s, against 16 ms for XLA's convolutions in flops.py; this row set decides
  # jmeta.models.layers.default_conv_impl on GPU.) The report is written after each
  # cell, so a timeout keeps the cells already run.
  timeout 330 "$py" benchmarks/meta_step.py --estimators maml,fomaml,reptile,maml_plus_plus \
    --configs 5w1s,20w1s --batching vmap --conv-impl xla,patches --variants strided \
    --repeats 20 --timeout 60 --out "$out"
  timeout 50 "$py" benchmarks/meta_step.py --estimators protonet --configs 60w5s5q \
    --batching vmap --conv-impl xla,patches --repeats 20 --timeout 25 --append --out "$out"
  # Achieved FLOP/s of the default rows against a measured and a datasheet peak.
  # (flops.py writes its report at the end, so four cells keep it inside the limit.)
  timeout 110 "$py" benchmarks/flops.py --repeats 20 --nominal-peak-tflops "$nominal" \
    --cells maml:5w1s:auto:auto,maml:20w1s:auto:auto,fomaml:5w1s:auto:auto,fomaml:20w1s:auto:auto \
    --out "$out"
  # Whether the experiments' loop runs ahead of the GPU (the transfer guard raises
  # on any implicit device-to-host copy).
  timeout 40 "$py" benchmarks/dispatch.py --steps 200 --out "$out"
  date -u
} 2>&1 | tee "$out/device_suite.log"
