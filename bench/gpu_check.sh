#!/usr/bin/env bash
# The GPU checks of issue 13 (point 5) as one script, for a session that is lent a device
# machine (`run` tool: the working tree is copied there; nothing can be downloaded there).
#
#   run(command="bash bench/gpu_check.sh", timeout_s=540)
#
# 1. the CUDA tests (they skip on a machine without CUDA, so CI never runs them);
# 2. bench_correct.py on the GPU and on the CPU of the same machine: seconds per step split into
#    network and topology, and per scan, for 2D 256x256 and 3D 96^3.
# topofix's own dependencies must be importable there: if `python -c "import topofix"` fails,
# bring the missing wheels as the device README says (.whl carried) and set PYTHONPATH.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$(pwd)"
out="${OUT:-/tmp/gpu_check}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python -c "import torch, topofix; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" \
    | tee -a "$out/gpu.txt" || exit 1
python -m pytest -q -p no:cacheprovider -rs -k "cuda or gpu or device" \
    tests/test_differentiable.py tests/test_loss_batch.py tests/test_correction.py tests/test_inference.py \
    tests/test_cli_predict.py tests/test_cli_validation.py 2>&1 | tee "$out/tests.log"
threads=$(( $(nproc) < 8 ? $(nproc) : 8 ))
python bench/bench_correct.py --device cuda --threads "$threads" 2>&1 | tee "$out/bench_correct_cuda.txt"
python bench/bench_correct.py --device cpu --threads "$threads" 2>&1 | tee "$out/bench_correct_cpu.txt"
python bench/bench_stack_step.py --threads "$threads" 2>&1 | tee "$out/bench_stack_step.txt"
