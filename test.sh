#!/usr/bin/env bash
# Set everything up (into .venv) and run the whole test suite (offscreen; needs ../shared/data or LEUKVIEWER_DATA).
set -euo pipefail
cd "$(dirname "$0")"
scripts/bootstrap.sh
export QT_QPA_PLATFORM=offscreen
# Two worker processes (LEUKVIEWER_TEST_WORKERS=0 runs in one); --dist loadfile keeps a file's tests, and the
# module fixtures they share, in one worker.
exec .venv/bin/python -m pytest -n "${LEUKVIEWER_TEST_WORKERS:-2}" --dist loadfile --durations=25 "$@"
