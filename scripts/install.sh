#!/usr/bin/env bash
# Creates .venv and installs the verified stack (../shared/STACK.md): the package with its pinned
# dependencies, then Horovod 0.28.1 built against the installed TensorFlow with the Gloo controller, from its
# sdist with the patches in scripts/patches/ applied (each says why; see docs/cluster.md).
#
# Idempotent: a second run with an unchanged pyproject.toml does nothing but check. The Horovod wheel is
# built once and kept in $HPO_CACHE_DIR (default ~/.cache/hpo), keyed by the Horovod, TensorFlow and
# Python versions, so a fresh clone on the same machine skips the ~8 minute build.
#
# Environment: PYTHON (interpreter to create the venv with, default python3.11 then python3),
#              HPO_CACHE_DIR, HPO_GPU=1 (install tensorflow[and-cuda] and build Horovod with NCCL).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

HOROVOD_VERSION=0.28.1
TF_VERSION=2.18.1
VENV=.venv
say() { printf '\033[1m[install]\033[0m %s\n' "$*"; }

if [[ ! -x $VENV/bin/python ]]; then
  PY=${PYTHON:-}
  if [[ -z $PY ]]; then
    if command -v python3.11 >/dev/null; then PY=python3.11; else PY=python3; fi
  fi
  say "creating $VENV with $($PY --version 2>&1)"
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip "setuptools>=68,<80" wheel
fi
PIP=("$VENV/bin/python" -m pip)
PYV=$("$VENV/bin/python" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')

stamp="$VENV/.hpo-installed-$(sha256sum pyproject.toml | cut -c1-16)${HPO_GPU:+-gpu}"
if [[ ! -f $stamp ]]; then
  say "installing the package and its pinned dependencies (first time: several minutes)"
  extras="dev,gp,cluster"
  "${PIP[@]}" install --quiet --progress-bar off -e ".[${extras}]"
  if [[ ${HPO_GPU:-} == 1 ]]; then
    say "GPU variant: tensorflow[and-cuda]==$TF_VERSION"
    "${PIP[@]}" install --quiet "tensorflow[and-cuda]==$TF_VERSION"
  fi
  rm -f "$VENV"/.hpo-installed-*
  touch "$stamp"
else
  say "python dependencies up to date ($stamp)"
fi

installed_patch=$(cat "$VENV/.hpo-horovod-patches" 2>/dev/null || true)
wanted_patch=$(cat scripts/patches/horovod-"$HOROVOD_VERSION"-*.patch | sha256sum | cut -c1-8)
if [[ $installed_patch == "$wanted_patch" ]] && "$VENV/bin/python" -c 'import horovod.tensorflow' >/dev/null 2>&1; then
  say "horovod already installed: $("$VENV/bin/python" -c 'import horovod; print(horovod.__version__)') (patches $wanted_patch)"
  exit 0
fi

flavour=cpu
[[ ${HPO_GPU:-} == 1 ]] && flavour=nccl
patches=(scripts/patches/horovod-"$HOROVOD_VERSION"-*.patch)
patched=$(cat "${patches[@]}" | sha256sum | cut -c1-8)  # a changed patch builds a new wheel
cache=${HPO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/hpo}/wheels/horovod-$HOROVOD_VERSION-tf$TF_VERSION-$PYV-$flavour-p$patched
wheel=$(ls "$cache"/horovod-*.whl 2>/dev/null | head -n1 || true)
if [[ -z $wheel ]]; then
  say "building horovod $HOROVOD_VERSION against tensorflow $TF_VERSION (Gloo controller); about 8 minutes on 2 cores"
  command -v cmake >/dev/null || "${PIP[@]}" install --quiet cmake
  mkdir -p "$cache"
  tmp=$(mktemp -d)
  gpu_env=()
  [[ $flavour == nccl ]] && gpu_env=(HOROVOD_GPU_OPERATIONS=NCCL)
  "${PIP[@]}" download --quiet --no-deps --no-binary :all: "horovod==$HOROVOD_VERSION" -d "$tmp"
  tar -xzf "$tmp/horovod-$HOROVOD_VERSION.tar.gz" -C "$tmp"
  for patch in "${patches[@]}"; do
    say "applying $patch"
    if command -v patch >/dev/null; then
      patch -d "$tmp/horovod-$HOROVOD_VERSION" -p1 --forward --quiet < "$patch"
    else
      (cd "$tmp/horovod-$HOROVOD_VERSION" && git apply -p1 < "$ROOT/$patch")
    fi
  done
  env HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 \
      HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 MAKEFLAGS=-j"$(nproc)" "${gpu_env[@]}" \
      "${PIP[@]}" wheel --no-build-isolation --no-deps --no-cache-dir "$tmp/horovod-$HOROVOD_VERSION" -w "$tmp"
  rm -rf "$tmp/horovod-$HOROVOD_VERSION" "$tmp/horovod-$HOROVOD_VERSION.tar.gz"
  mv "$tmp"/horovod-*.whl "$cache"/
  rmdir "$tmp" 2>/dev/null || true
  wheel=$(ls "$cache"/horovod-*.whl | head -n1)
else
  say "using cached horovod wheel $wheel"
fi
"${PIP[@]}" install --quiet --force-reinstall --no-deps "$wheel"
echo "$wanted_patch" > "$VENV/.hpo-horovod-patches"
"$VENV/bin/horovodrun" --check-build | sed 's/^/    /'
say "done"
