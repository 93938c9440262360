#!/usr/bin/env bash
# Reproduce the embedded default model (the `synthetic` configuration) from nothing, on CPU.
# Usage: scripts/train_default_model.sh [DATA_DIR] [RUN_DIR] [DIFFUSION_STEPS]
# Stages (each resumes if interrupted; re-run the script to continue):
#   1. two synthetic worlds with the same MEAD-like identities: the `default` preset (judges,
#      backbone, embedder) and the same with 48 talking (HDTF-like) identities (denoiser)
#   2. backbone stand-ins: VAE, Whisper encoder, CLIP image encoder, expression encoder
#   3. the emotion embedder and the per-emotion prompt priors
#   4. the denoiser with the DICE-Talk conditioning (the shipped model: reference frames from
#      the same video, 3,000 steps; see docs/training.md for why emotion needs more)
#   5. export in float16 with the sampling recipe, into the package
set -euo pipefail
DATA=${1:-data}
RUN=${2:-runs/default}
STEPS=${3:-3000}
THREADS=${THREADS:-1}
DT=${DICETALK:-.venv/bin/dicetalk}

[ -f "$DATA/world/splits.json" ] || $DT synth "$DATA/world" --preset default --seed 0
# More talking identities than the preset: the denoiser must generalise to new faces.
[ -f "$DATA/world_talking/splits.json" ] || $DT synth "$DATA/world_talking" --preset default --seed 0 --hdtf-identities 48
$DT pretrain "$DATA/world" --out "$RUN/backbone" --steps-scale 0.6 --threads "$THREADS"
[ -f "$RUN/embedder/priors/config.json" ] || $DT train-embedder "$DATA/world" --backbone "$RUN/backbone" --out "$RUN/embedder" --threads "$THREADS" \
    $( [ -d "$RUN/embedder/run/checkpoints" ] && echo --resume )
[ -f "$RUN/diffusion/model/model_index.json" ] || $DT train "$DATA/world_talking" --backbone "$RUN/backbone" --embedder "$RUN/embedder" \
    --out "$RUN/diffusion" --steps "$STEPS" --same-video-reference --threads "$THREADS" $( [ -d "$RUN/diffusion/run/checkpoints" ] && echo --resume )
$DT export "$RUN/diffusion" --out src/dicetalk/assets/default_model --dtype float16 --steps 10 --sampler dpmpp-2m --guidance-fraction 0.5
