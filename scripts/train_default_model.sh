#!/usr/bin/env bash
# Reproduce the embedded default model (the `synthetic` configuration) from nothing, on CPU.
# Usage: scripts/train_default_model.sh [DATA_DIR] [RUN_DIR] [SCRATCH_STEPS] [WIDE_STEPS] [SYNC_STEPS]
# Stages (each resumes if interrupted; re-run the script to continue):
#   1. two synthetic worlds: the `default` preset (judges, backbone, embedder, the denoiser's first
#      stage) and one with 96 MEAD-like identities of one sentence each (new faces to generalise to)
#   2. backbone stand-ins: VAE, Whisper encoder, CLIP image encoder, expression encoder; then the
#      VAE's decoder fine-tuned alone (the encoder, so the latent space, stays as it is)
#   3. the emotion embedder and the per-emotion prompt priors
#   4. the denoiser from scratch with neutral reference frames (the emotion must come from the
#      conditions, not be copied from the reference), 3/4 emotion data
#   5. the same denoiser continued on the 96-identity world
#   6. a latent lip-sync expert on the 96-identity world's ground truth, then the denoiser continued
#      with its sync loss (weight 0.2, new windows: seed 1)
#   7. the reference refiner, on the fine-tuned decoder's frames
#   8. export in float16 with the fine-tuned decoder, the refiner and the sampling recipe (8 Euler steps
#      with churn, guidance on the steps at noise levels 0.05-5, windows without overlap, identity scale 1,
#      audio + emotion scale 4), into the package
set -euo pipefail
DATA=${1:-data}
RUN=${2:-runs/default}
SCRATCH=${3:-4000}
WIDE=${4:-3500}
SYNC=${5:-1000}
THREADS=${THREADS:-1}
DT=${DICETALK:-.venv/bin/dicetalk}

resume() { [ -d "$1/run/checkpoints" ] && echo --resume || true; }

[ -f "$DATA/world/splits.json" ] || $DT synth "$DATA/world" --preset default --seed 0
[ -f "$DATA/world96/splits.json" ] || $DT synth "$DATA/world96" --preset default --seed 1 --identities 96 --sentences 1
$DT pretrain "$DATA/world" --out "$RUN/backbone" --steps-scale 0.6 --threads "$THREADS"
$DT pretrain "$DATA/world" --out "$RUN/decoder" --parts vae --decoder-of "$RUN/backbone/vae" --threads "$THREADS"
[ -f "$RUN/embedder/priors/config.json" ] || $DT train-embedder "$DATA/world" --backbone "$RUN/backbone" --out "$RUN/embedder" \
    --threads "$THREADS" $(resume "$RUN/embedder")
[ -f "$RUN/scratch/model/model_index.json" ] || $DT train "$DATA/world" --backbone "$RUN/backbone" --embedder "$RUN/embedder" \
    --out "$RUN/scratch" --steps "$SCRATCH" --mix 0.75 --threads "$THREADS" $(resume "$RUN/scratch")
[ -f "$RUN/diffusion/model/model_index.json" ] || $DT train "$DATA/world96" --backbone "$RUN/backbone" --embedder "$RUN/embedder" \
    --init "$RUN/scratch/run/checkpoints/step_$(printf %07d "$SCRATCH")" --out "$RUN/diffusion" --steps "$WIDE" --mix 0.75 \
    --threads "$THREADS" $(resume "$RUN/diffusion")
[ -f "$RUN/sync_expert/sync_expert/config.json" ] || $DT train-sync-expert "$DATA/world96" --backbone "$RUN/backbone" \
    --embedder "$RUN/embedder" --out "$RUN/sync_expert" --mix 0.75 --threads "$THREADS" $(resume "$RUN/sync_expert")
[ -f "$RUN/sync/model/model_index.json" ] || $DT train "$DATA/world96" --backbone "$RUN/backbone" --embedder "$RUN/embedder" \
    --init "$RUN/diffusion/run/checkpoints/step_$(printf %07d "$WIDE")" --out "$RUN/sync" --steps "$SYNC" --mix 0.75 --seed 1 \
    --sync-expert "$RUN/sync_expert/sync_expert" --sync-weight 0.2 --threads "$THREADS" $(resume "$RUN/sync")
$DT pretrain "$DATA/world" --out "$RUN/refiner" --parts refiner --decoder-of "$RUN/decoder/vae" --threads "$THREADS"
$DT export "$RUN/sync" --out src/dicetalk/assets/default_model --dtype float16 --face-layout synthetic \
    --recipe "steps=8,sampler=euler-churn,guidance_interval=0.05:5,overlap=0,identity_scale=1,emotion_scale=4,noise_aug=0" \
    --vae "$RUN/decoder/vae" --refiner "$RUN/refiner/refiner"
