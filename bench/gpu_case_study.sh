#!/usr/bin/env bash
# The case study over SmolLM2-135M on a CUDA device: the quick and the full run, three seeds
# each, written to docs/smollm2/ and docs/smollm2/full/.
#
#   bench/gpu_case_study.sh            on a machine whose torch sees a CUDA device
#   GPU_CASE_STUDY_TOY=1 bench/gpu_case_study.sh
#                                      at toy size on the CPU (two hospitals of a few cases, one
#                                      round, one seed, into $OUT or a temporary folder): checks
#                                      that the script and the SmolLM2 path run end to end
#
# Models train and evaluate on $EDGETUNE_DEVICE (cuda here); adapters, aggregation, hashes and
# the chain stay on the CPU, so what a task exchanges does not depend on the device.
set -euo pipefail
cd "$(dirname "$0")/.."

make install smollm2 >/dev/null
export HF_HUB_OFFLINE=1
edgetune=(.venv/bin/edgetune case-study --language-model smollm2)

if [[ "${GPU_CASE_STUDY_TOY:-0}" == 1 ]]; then
    out="${OUT:-$(mktemp -d)}"
    toy=(--set hospitals=2 --set hospital_sizes=6,4 --set noisy_hospital=1 --set rounds=1
         --set steps_per_round=1 --set alone_rounds=1 --set alone_round_steps=1
         --set batch_size=2 --set test_per_class=1 --set validation_per_class=1
         --set pretrain_pairs=4 --set pretrain_steps=1 --set pretrain_tune_steps=0
         --set utility=loss)
    EDGETUNE_DEVICE=cpu "${edgetune[@]}" --quick --seed 0 "${toy[@]}" \
        --out "$out/smollm2" --workdir "$out/work"
    test -s "$out/smollm2/case-study.md" && test -s "$out/smollm2/seed-0/case-study.md"
    echo "toy run written to $out/smollm2"
    exit 0
fi

.venv/bin/python -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else
    "torch sees no CUDA device: install a CUDA build of torch, or run with GPU_CASE_STUDY_TOY=1")'
# Deterministic cuBLAS, so every validator's evaluation of a coalition gives the same numbers.
export EDGETUNE_DEVICE="${EDGETUNE_DEVICE:-cuda}" CUBLAS_WORKSPACE_CONFIG=:4096:8
# One GPU: seeds one after another (--jobs 1) rather than competing for it.
"${edgetune[@]}" --quick --jobs 1 --out docs/smollm2 --workdir .edgetune/smollm2
"${edgetune[@]}" --full --jobs 1 --out docs/smollm2/full --workdir .edgetune/smollm2-full
echo "reports written to docs/smollm2/case-study.md and docs/smollm2/full/case-study.md"
