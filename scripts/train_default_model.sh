#!/usr/bin/env bash
# Reproduce the embedded default model (the `synthetic` configuration) from nothing, on CPU.
# Usage: scripts/train_default_model.sh [WORLD_DIR] [RUN_DIR] [DIFFUSION_STEPS]
# Stages (each resumes if interrupted; re-run the script to continue):
#   1. the synthetic world (`dicetalk synth`, ~15 min on 2 cores)
#   2. backbone stand-ins: VAE, Whisper encoder, CLIP image encoder, expression encoder
#   3. the emotion embedder and the per-emotion prompt priors
#   4. the denoiser with the DICE-Talk conditioning, exported in float16
set -euo pipefail
WORLD=${1:-data/world}
RUN=${2:-runs/default}
STEPS=${3:-12000}
THREADS=${THREADS:-1}
DT=${DICETALK:-.venv/bin/dicetalk}

# More talking (HDTF-like) identities than the preset: the denoiser must generalise to new faces.
[ -f "$WORLD/splits.json" ] || $DT synth "$WORLD" --preset default --seed 0 --hdtf-identities 48
$DT pretrain "$WORLD" --out "$RUN/backbone" --threads "$THREADS"
[ -f "$RUN/embedder/priors/config.json" ] || $DT train-embedder "$WORLD" --backbone "$RUN/backbone" --out "$RUN/embedder" --threads "$THREADS" \
    $( [ -d "$RUN/embedder/run/checkpoints" ] && echo --resume )
$DT train "$WORLD" --backbone "$RUN/backbone" --embedder "$RUN/embedder" --out "$RUN/diffusion" --steps "$STEPS" \
    --export-dtype float16 --threads "$THREADS" $( [ -d "$RUN/diffusion/run/checkpoints" ] && echo --resume )
echo "default model: $RUN/diffusion/model (copy it to src/dicetalk/assets/default_model)"
