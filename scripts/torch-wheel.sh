#!/usr/bin/env bash
# Installs a pip torch (its bundled libtorch) into a folder of this checkout, without
# touching the system's Python: `bash scripts/torch-wheel.sh cpu|cuda [DIR]`.
#   cpu   torch ${SPIN_TORCH_CPU_VERSION:-2.13.0} CPU build (MKL inside)          → .torch/cpu
#   cuda  torch ${SPIN_TORCH_CUDA_VERSION:-2.14.1} CUDA 13 build + the nvidia-* wheels
#         it loads at run time (cuBLAS, cuDNN, NCCL, …)                            → .torch/cuda
# Prints the libtorch prefix (DIR/torch) on its last line, for LIBTORCH=. Exits 3 when pip
# cannot get the wheel here (no index reachable), so callers can fall back.
# --no-deps: only the libraries are needed, not torch's Python dependencies (triton,
# cuda-bindings, sympy …), some of which a local mirror may lack.
set -euo pipefail
variant="${1:?usage: scripts/torch-wheel.sh cpu|cuda [DIR]}"
# DIR is relative to the caller's folder; the default lies in the checkout.
repo="$(cd "$(dirname "$0")/.." && pwd)"
dir="$(realpath -m "${2:-$repo/.torch/$variant}")"

case "$variant" in
  cpu)
    version="${SPIN_TORCH_CPU_VERSION:-2.13.0}"
    packages=("torch==$version+cpu")
    public_index="https://download.pytorch.org/whl/cpu"
    ;;
  cuda)
    version="${SPIN_TORCH_CUDA_VERSION:-2.14.1}"
    packages=("torch==$version" nvidia-cuda-runtime nvidia-cublas nvidia-cufft nvidia-cufile
      nvidia-cuda-cupti nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-nvjitlink
      nvidia-cuda-nvrtc nvidia-nvtx nvidia-cudnn-cu13 nvidia-cusparselt-cu13 nvidia-nccl-cu13
      nvidia-nvshmem-cu13)
    public_index="https://download.pytorch.org/whl/cu130"
    ;;
  *) echo "torch-wheel: unknown variant '$variant' (cpu or cuda)" >&2; exit 2 ;;
esac

if [[ -f $dir/.installed ]] && [[ $(cat "$dir/.installed") == "${packages[*]}" ]]; then
  echo "$dir/torch"
  exit 0
fi
command -v python3 >/dev/null || { echo "torch-wheel: python3 not found" >&2; exit 3; }
python3 -m pip --version >/dev/null 2>&1 || { echo "torch-wheel: pip not found (apt-get install python3-pip)" >&2; exit 3; }

# A machine whose pip is configured with extra (mirror) indexes uses them as the index:
# the public index may be unreachable there, and pip would retry it for minutes.
index_args=()
if [[ -n ${PIP_INDEX_URL:-} ]]; then
  index_args=(--index-url "$PIP_INDEX_URL")
else
  # pip prints a multi-line value one entry a line; an index-url set in pip's config wins.
  mapfile -t configured < <(python3 -m pip config get global.index-url 2>/dev/null || true)
  mapfile -t extra < <(python3 -m pip config get global.extra-index-url 2>/dev/null | tr ' ' '\n' || true)
  mirrors=()
  for url in "${configured[@]}" "${extra[@]}"; do [[ -n $url ]] && mirrors+=("$url"); done
  if ((${#mirrors[@]} > 0)); then
    index_args=(--index-url "${mirrors[0]}")
    for mirror in "${mirrors[@]:1}"; do index_args+=(--extra-index-url "$mirror"); done
  else
    index_args=(--index-url "$public_index" --extra-index-url https://pypi.org/simple)
  fi
fi

rm -rf "$dir"
echo "torch-wheel: installing ${packages[*]} into $dir" >&2
if ! python3 -m pip install --quiet --no-deps --no-compile --disable-pip-version-check \
  --timeout 30 --retries 1 "${index_args[@]}" --target "$dir" "${packages[@]}" >&2; then
  rm -rf "$dir"
  echo "torch-wheel: pip could not install ${packages[*]}" >&2
  exit 3
fi
echo "${packages[*]}" >"$dir/.installed"
echo "$dir/torch"
