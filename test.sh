#!/usr/bin/env bash
# Set everything up (into .venv) and run the whole test suite (offscreen; needs ../shared/data or LEUKVIEWER_DATA).
set -euo pipefail
cd "$(dirname "$0")"
scripts/bootstrap.sh
export QT_QPA_PLATFORM=offscreen
exec .venv/bin/python -m pytest --durations=25 "$@"
