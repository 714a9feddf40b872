#!/usr/bin/env bash
# Sets up a Debian 12 machine for spin-native: system packages (Debian's libtorch and OpenBLAS
# as the fallback, gloo headers, the compiler), a pip torch 2.x CPU build in .torch/cpu when
# pip can get one (the default libtorch: README, "Building"), then `npm ci` (which builds the
# addon against the libtorch found and compiles the TypeScript). Safe to re-run: it installs
# only what is missing. SPIN_LIBTORCH=system skips the pip torch and builds against Debian's.
set -euo pipefail
cd "$(dirname "$0")/.."

# The OpenBLAS build, chosen by measurement (README, "Threads and BLAS"): the OpenMP build
# shares libtorch's OpenMP runtime instead of running a second thread pool beside it.
BLAS_VARIANT="${SPIN_BLAS_VARIANT:-openmp}"
# libgloo-dev: headers for the Gloo process group (distributed). chromium: the test suite
# renders the run report in headless Chromium.
# python3-pip: installs the pip torch (a wheel into .torch/, not into the system's Python).
PACKAGES=(libtorch-dev libgloo-dev "libopenblas0-${BLAS_VARIANT}" g++ make cmake python3 python3-pip chromium)

missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]} > 0)); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing Debian packages: ${missing[*]}; run as root or: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# libtorch links libblas.so.3 and libopenblas.so.0 through Debian's alternatives; point them
# at the chosen build (without OpenBLAS the reference BLAS is ~60x slower).
arch_dir="/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)"
multiarch="$(basename "$arch_dir")"
if [[ $(id -u) -eq 0 ]]; then
  for lib in libblas.so.3 liblapack.so.3 libopenblas.so.0; do
    target="$arch_dir/openblas-${BLAS_VARIANT}/$lib"
    [[ -e $target ]] && update-alternatives --quiet --set "$lib-$multiarch" "$target"
  done
fi
echo "setup: BLAS is $(readlink -f "$arch_dir/libblas.so.3")"

# The libtorch to build against: pip torch 2.x (MKL; ~1.5x faster SPIN steps than Debian's 1.13
# with OpenBLAS here) when pip can install it, else Debian's.
if [[ ${SPIN_LIBTORCH:-pip} == system ]]; then
  export LIBTORCH=system
elif ! bash scripts/torch-wheel.sh cpu >/dev/null; then
  echo "setup: no pip torch to be had here; building against Debian's libtorch" >&2
  export LIBTORCH=system
fi
node scripts/libtorch.mjs --describe | sed -n 's/^  "\(origin\|version\|libDir\)": /setup: libtorch \1 /p'

npm ci --no-audit --no-fund
