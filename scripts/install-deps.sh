#!/usr/bin/env bash
# Install what slimlm needs on a fresh Debian machine: a C toolchain (gcc, make), clang for the
# fuzzer, nginx for the replicated-serving test, gnuplot for report figures, and Python with numpy + gguf + autograd for the
# test oracles. Skips what is already there.
# Usage: scripts/install-deps.sh [--build-only]
set -euo pipefail
build_only=0
[ "${1:-}" = "--build-only" ] && build_only=1

need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(gcc libc6-dev)
command -v make >/dev/null 2>&1 || need_apt+=(make)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
for pkg in libmicrohttpd-dev libcjson-dev libzstd-dev; do  # the HTTP server (slimlm serve), packed models
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
python3 -m pip --version >/dev/null 2>&1 || need_apt+=(python3-pip)
if [ $build_only = 0 ]; then
  command -v clang >/dev/null 2>&1 || need_apt+=(clang)
  # the load balancer of the replicated-serving test (deploy/) and its JavaScript module
  command -v nginx >/dev/null 2>&1 || need_apt+=(nginx-light)
  dpkg -s libnginx-mod-http-js >/dev/null 2>&1 || need_apt+=(libnginx-mod-http-js)
  # the figures of `slimlm report` (pngcairo terminal)
  command -v gnuplot >/dev/null 2>&1 || need_apt+=(gnuplot-nox)
  # libFuzzer and the sanitizer runtimes for clang
  if command -v clang >/dev/null 2>&1; then
    rt=$(clang -print-resource-dir 2>/dev/null)/lib/linux/libclang_rt.fuzzer-x86_64.a
    [ -f "$rt" ] || need_apt+=(libclang-rt-dev)
  else
    need_apt+=(libclang-rt-dev)
  fi
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need_apt[*]}" >&2
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if [ $build_only = 0 ]; then
  # numpy + gguf: the logits / format oracles; autograd: the training-step oracle
  if ! python3 -c "import numpy, gguf, autograd" >/dev/null 2>&1; then
    echo "installing Python packages: numpy gguf autograd" >&2
    python3 -m pip install -q numpy gguf autograd 2>/dev/null ||
      python3 -m pip install -q --break-system-packages numpy gguf autograd
  fi
fi
