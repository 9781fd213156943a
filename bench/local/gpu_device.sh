#!/usr/bin/env bash
# The whole GPU run of issue 17 (item 7) in one call on the GPU machine, from the repository
# root, with the kit gpu_kit.sh packed here carried along:
#
#   run(carry=[".gpu"], timeout_s=600, command="bench/local/gpu_device.sh")
#
# Unpacks llama.cpp's CUDA build and the Python packages into /tmp/gpu, writes the two
# random-weight models (SmolLM2-135M's exact layout from its header; the 8B Llama shape),
# measures the 8B model's on-demand load through the gateway (ondemand.py), then runs
# gpu_run.sh (our worker against llama-server at 1/8/32/64 streams, both models). Results go
# to $OUT (ondemand.txt, engines.txt, nvidia-smi.csv, setup.txt).
# Env: KIT (.gpu), PYTHON (python3: the machine's, with numpy), ONDEMAND (1; 0 skips it),
# and gpu_run.sh's (STREAMS, MAX_TOKENS, PER_STREAM, MODELS, SKIP, SHAPE_8B, N_GPU_LAYERS).
# To check it on a CPU (the CUDA build finds no GPU and runs there): SHAPE_8B=tiny
# STREAMS=1,2 MAX_TOKENS=16 PER_STREAM=1 N_GPU_LAYERS=0 OUT=/tmp/gpu-check.
set -euo pipefail
kit=${KIT:-.gpu}
out=${OUT:-/tmp/gpu-out}
py=${PYTHON:-python3}
base=/tmp/gpu
mkdir -p "$base/llama" "$base/site" "$out"
started=$(date +%s)
say() { echo "[$(( $(date +%s) - started )) s] $*" | tee -a "$out/setup.txt"; }

say "unpacking"
tar -xJf "$kit/llama-cuda.tar.xz" -C "$base/llama"
"$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$base/site" "$kit"/wheels/*.whl
tar -xzf "$kit/llama_cpp.tar.gz" -C "$base/site"

# cuBLAS and the CUDA runtime: the toolkit's where it has them, else PyTorch's wheels'.
libs=/usr/local/cuda/lib64
for lib in libcublas.so.13 libcudart.so.13; do
    if ! { ldconfig -p 2>/dev/null || true; } | grep -q "$lib" \
            && [ ! -e "/usr/local/cuda/lib64/$lib" ]; then
        found=$(find /usr/local /opt /usr/lib -name "$lib" 2>/dev/null | head -1)
        [ -n "$found" ] || found=$(find / -xdev -name "$lib" 2>/dev/null | head -1)
        if [ -n "$found" ]; then libs="$libs:$(dirname "$found")"; fi
    fi
done
export LD_LIBRARY_PATH="$libs:${LD_LIBRARY_PATH:-}"
export PYTHONPATH="$base/site:$PWD" LLAMA_CPP_LIB_PATH="$base/llama"
export LLAMA_SERVER="$base/llama/llama-server" PYTHONUNBUFFERED=1
missing=$(ldd "$base/llama/libggml-cuda.so" "$LLAMA_SERVER" | grep "not found" || true)
[ -z "$missing" ] || { say "libraries not found: $missing"; exit 1; }
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  "$py" --version; "$LLAMA_SERVER" --version 2>&1 | tail -2
  "$py" -c "import llama_cpp; print('llama_cpp', llama_cpp.__version__, \
llama_cpp.llama_supports_gpu_offload())"; } 2>&1 | tee -a "$out/setup.txt"

say "writing the models"
"$py" bench/local/synth_gguf.py "$base/smollm2-random.gguf" --like "$kit/smollm2.head" \
    | tee -a "$out/setup.txt"
export SHAPE_8B=${SHAPE_8B:-8b}
big="$base/llama-$SHAPE_8B-random.gguf"
"$py" bench/local/synth_gguf.py "$big" --shape "$SHAPE_8B" --donor "$kit/smollm2.head" \
    | tee -a "$out/setup.txt"

if [ "${ONDEMAND:-1}" != 0 ]; then
    say "on-demand load of the $SHAPE_8B model"
    for warmup in "" --no-warmup; do
        "$py" bench/local/ondemand.py --model "$big" --n-gpu-layers "${N_GPU_LAYERS:--1}" \
            --rounds 3 $warmup 2>&1 | tee -a "$out/ondemand.txt"
    done
fi

say "engines"
DEFAULT_GGUF="$base/smollm2-random.gguf" DONOR="$kit/smollm2.head" MODEL_DIR="$base" \
    PYTHON="$py" bench/local/gpu_run.sh "$out"
say "done"
