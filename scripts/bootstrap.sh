#!/usr/bin/env bash
# Create or update .venv at the repository root with everything leukviewer and its tests need.
# Idempotent: a second run with an unchanged pyproject.toml does nothing but check.
# Installs packages only (from the package index); never downloads model weights or data. On install it also
# converts the bundled model to LiteRT (leukviewer --prepare-engine), so the app starts on the faster engine.
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for cand in python3.11 python3.12 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] <= (3, 12) else 1)'; then
      PY="$cand"; break
    fi
  done
fi
if [ -z "$PY" ]; then
  echo "leukviewer needs Python 3.11 or 3.12 (python3.11 on PATH, or PYTHON=/path/to/python)." >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  echo "creating .venv with $PY" >&2
  "$PY" -m venv .venv
fi

stamp=.venv/.leukviewer-installed
want="$(cat pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "installing leukviewer and its dependencies into .venv (first time: a few minutes)" >&2
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[test]'
  echo "$want" > "$stamp"
  # The faster engine from the first start: convert the bundled model to LiteRT now, into the engine's cache
  # (keyed and verified by the model's manifest hash), not in the middle of a user's first case.
  if [ -f assets/models/leukviewer-b3/model.json ]; then
    echo "converting the bundled model to LiteRT (once, about a minute)" >&2
    .venv/bin/python -m leukviewer --prepare-engine >/dev/null \
      || echo "warning: the LiteRT conversion failed; leukviewer uses TensorFlow until it succeeds" >&2
  fi
fi
