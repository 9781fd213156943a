#!/usr/bin/env bash
# Packs what the GPU run needs into .gpu/ at the repository root (ignored by git), built on
# this machine ahead of time: the GPU machine has 15 minutes a session, no network, and takes
# 64 MiB a call, where a CUDA build of llama.cpp costs 6 minutes there (twice over with
# llama-cpp-python's own) and the default model alone is 98 MB. Carry it with
# `run(carry=[".gpu"], command="bench/local/gpu_device.sh")`.
#
#   .gpu/llama-cuda.tar.xz  llama.cpp as the installed llama-cpp-python vendors it, built for
#                           CUDA (sm_$CUDA_ARCH, default 90: H100/H200): llama-server and the
#                           shared libraries llama-cpp-python loads (LLAMA_CPP_LIB_PATH)
#   .gpu/llama_cpp.tar.gz   llama-cpp-python's Python package, without its CPU libraries
#   .gpu/wheels/            CPython 3.12 wheels of everything else the gateway and the worker
#                           import, less what the machine's image has (numpy, uvloop, ...)
#   .gpu/smollm2.head       the default model's header (synth_gguf.py --like ... --header-only)
#
# The build takes 30-40 minutes on 2 cores and is kept in $WORK (default /tmp/gpu-kit) for
# the next run. It needs nvcc (CUDA 13) and fetches cuBLAS's headers from PyPI.
# Env: PYTHON (python), CUDA_ARCH (90), WORK (/tmp/gpu-kit), KIT (<repo>/.gpu).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
py=${PYTHON:-python}
arch=${CUDA_ARCH:-90}
work=${WORK:-/tmp/gpu-kit}
kit=${KIT:-$root/.gpu}
export PATH=/usr/local/cuda/bin:$PATH
ver=$("$py" -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))')
build=$work/build-$ver-sm$arch
mkdir -p "$work" "$kit"

if [ ! -x "$build/bin/llama-server" ]; then
    nvcc --version | grep -q "release 13\." || { echo "needs nvcc 13 (CUDA 13)" >&2; exit 1; }
    src=$work/llama_cpp_python-$ver/vendor/llama.cpp
    if [ ! -d "$src" ]; then
        "$py" -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$ver" -d "$work"
        tar xzf "$work/llama_cpp_python-$ver.tar.gz" -C "$work"
    fi
    # The toolkit here has no cuBLAS; its wheel brings the headers and the library to link.
    blas=$work/cublas/nvidia/cu13
    if [ ! -e "$blas/include/cublas_v2.h" ]; then
        "$py" -m pip download -q --no-deps "nvidia-cublas>=13,<14" -d "$work/cublas-whl"
        mkdir -p "$work/cublas"
        (cd "$work/cublas" && unzip -q -o "$work"/cublas-whl/nvidia_cublas-*.whl)
        ln -sf libcublas.so.13 "$blas/lib/libcublas.so"
        ln -sf libcublasLt.so.13 "$blas/lib/libcublasLt.so"
    fi
    # No CUDA driver here to link against: GGML_CUDA_NO_VMM leaves out the one part that
    # calls it directly (the virtual-memory pool; llama.cpp falls back to cudaMalloc's).
    # GGML_NATIVE off: the GPU machine's CPU is not this one.
    cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON \
        -DGGML_CUDA_NO_VMM=ON -DCMAKE_CUDA_ARCHITECTURES="$arch" -DGGML_NATIVE=OFF \
        -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DBUILD_SHARED_LIBS=ON \
        -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
        -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON '-DCMAKE_INSTALL_RPATH=$ORIGIN' \
        -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON -DCMAKE_LIBRARY_PATH="$blas/lib" \
        -DCMAKE_EXE_LINKER_FLAGS="-Wl,-rpath-link,$blas/lib" \
        -DCMAKE_SHARED_LINKER_FLAGS="-Wl,-rpath-link,$blas/lib" \
        -DCMAKE_CXX_FLAGS="-I$blas/include" -DCMAKE_CUDA_FLAGS="-I$blas/include" >/dev/null
    cmake --build "$build" -j"$(nproc)" --target llama mtmd llama-server
fi

echo "packing into $kit"
(cd "$build/bin" && XZ_OPT="-6 -T0" tar -cJf "$kit/llama-cuda.tar.xz" llama-server lib*.so*)
site=$("$py" -c 'import llama_cpp, pathlib; print(pathlib.Path(llama_cpp.__file__).parent.parent)')
tar -C "$site" -czf "$kit/llama_cpp.tar.gz" --exclude=lib --exclude=__pycache__ llama_cpp

# Everything the gateway and the worker import, at the versions installed here.
pins=$("$py" - <<'EOF'
import importlib.metadata as md
from packaging.requirements import Requirement

ENV = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
       "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
       "implementation_name": "cpython", "platform_python_implementation": "CPython"}
SKIP = {"llm-gateway", "llama-cpp-python",  # the repository's, the kit's own
        # The GPU machine's image has these (.library/device/KINDS.md), none of them on the
        # path of a request's bytes: 9 MB less to carry.
        "numpy", "uvloop", "pygments", "tiktoken", "pyyaml", "regex", "rich",
        "markdown-it-py", "mdurl"}
seen: dict[str, str] = {}


def walk(name: str, extras: tuple[str, ...] = ()) -> None:
    key = name.lower().replace("_", "-")
    if key in seen:
        return
    dist = md.distribution(name)
    seen[key] = dist.version
    for text in dist.requires or []:
        req = Requirement(text)
        if req.marker is None or any(req.marker.evaluate({**ENV, "extra": e})
                                     for e in ("", *extras)):
            walk(req.name, tuple(req.extras))


for top in ("llm-gateway", "llama-cpp-python"):
    walk(top)
print(" ".join(f"{k}=={v}" for k, v in sorted(seen.items()) if k not in SKIP))
EOF
)
rm -rf "$kit/wheels"
platforms=()
for p in manylinux_2_{5,17,24,27,28,31,34}_x86_64 manylinux2014_x86_64 manylinux1_x86_64 any; do
    platforms+=(--platform "$p")
done
# shellcheck disable=SC2086  # one argument per pin
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --abi cp312 --abi abi3 --abi none "${platforms[@]}" \
    -d "$kit/wheels" $pins
"$py" "$here/synth_gguf.py" "$kit/smollm2.head" --header-only \
    --like "$("$py" -c "import sys; sys.path.insert(0, '$here'); from model import default_gguf; print(default_gguf())")"
du -sh "$kit"/* | sed 's/^/  /'
kit_bytes=$(du -sb "$kit" | cut -f1)
repo_bytes=$(cd "$root" && git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
total=$(( (kit_bytes + repo_bytes) >> 20 ))
echo "$total MiB with the repository's files (the GPU machine takes 64 MiB a call)"
[ "$total" -lt 62 ] || { echo "too large to carry" >&2; exit 1; }
