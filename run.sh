#!/usr/bin/env bash
# Set everything up (into .venv) and start leukviewer on the bundled model.
set -euo pipefail
cd "$(dirname "$0")"
scripts/bootstrap.sh
exec .venv/bin/leukviewer "$@"
