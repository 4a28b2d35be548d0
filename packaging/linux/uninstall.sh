#!/usr/bin/env bash
# Remove leukviewer installed by install.sh. Run it from the installation (PREFIX/lib/leukviewer/uninstall.sh,
# which finds its prefix itself) or from the unpacked archive with the prefix used to install:
#   ./uninstall.sh [--prefix DIR]     (default: ~/.local)
# Settings, reviews and retrained models are the user's and stay; the paths are printed at the end.
set -euo pipefail

# All in one function, read completely before it runs: this file may be deleted by itself.
main() {
  local here prefix
  here="$(cd "$(dirname "$0")" && pwd)"
  if [ "$(basename "$here")" = leukviewer ] && [ "$(basename "$(dirname "$here")")" = lib ]; then
    prefix="$(dirname "$(dirname "$here")")"
  else
    prefix="${HOME}/.local"
  fi
  while [ $# -gt 0 ]; do
    case "$1" in
      --prefix) prefix="${2:?--prefix needs a folder}"; shift 2 ;;
      -h|--help) echo "usage: $0 [--prefix DIR]"; return 0 ;;
      *) echo "usage: $0 [--prefix DIR]" >&2; return 2 ;;
    esac
  done
  local app_dir="$prefix/lib/leukviewer"
  if [ ! -x "$app_dir/leukviewer" ]; then
    echo "leukviewer is not installed in $prefix (no $app_dir/leukviewer)" >&2
    return 1
  fi
  rm -f "$prefix/share/applications/leukviewer.desktop" "$prefix/share/icons/hicolor/256x256/apps/leukviewer.png"
  if [ -L "$prefix/bin/leukviewer" ]; then rm -f "$prefix/bin/leukviewer"; fi
  rm -rf "$app_dir"
  command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database "$prefix/share/applications" 2>/dev/null || true
  echo "leukviewer was removed from $prefix."
  echo "Kept (yours to delete): settings in ${XDG_CONFIG_HOME:-$HOME/.config}/leukviewer, data and retrained models in"
  echo "${XDG_DATA_HOME:-$HOME/.local/share}/leukviewer, caches in ${XDG_CACHE_HOME:-$HOME/.cache}/leukviewer, and the"
  echo ".leukviewer/ review folders inside your case folders."
}

main "$@"
exit
