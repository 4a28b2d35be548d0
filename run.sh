#!/usr/bin/env bash
# Set everything up (into .venv) and start leukviewer on the bundled model.
set -euo pipefail
cd "$(dirname "$0")"
scripts/bootstrap.sh

# The window needs system libraries pip cannot install (Qt's xcb plugin on Linux): name them and the command that
# installs them, instead of Qt's "could not load the Qt platform plugin". The headless commands need none.
window=1
case "${1:-}" in batch|report) window=0 ;; esac
for arg in "$@"; do
  case "$arg" in
    --self-test|--version|-h|--help|--prepare-engine) window=0 ;;
    --smoke-test) [ -n "${QT_QPA_PLATFORM:-}" ] || window=0 ;;   # offscreen unless told otherwise
  esac
done
if [ "$window" = 1 ]; then
  plugin="$(ls .venv/lib/python3*/site-packages/PySide6/Qt/plugins/platforms/libqxcb.so 2>/dev/null | head -1 || true)"
  packaging/linux/check-system-libraries.sh ${plugin:+--plugin "$plugin"}
fi
exec .venv/bin/leukviewer "$@"
