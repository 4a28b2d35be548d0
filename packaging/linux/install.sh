#!/usr/bin/env bash
# Install leukviewer from this folder (the unpacked .tar.gz), for this user by default:
#   ./install.sh                    -> ~/.local/lib/leukviewer, ~/.local/bin/leukviewer, menu entry and icon
#   sudo ./install.sh --prefix /usr/local    (for every user of the workstation)
# Then runs the installed app's self-test (offline, no display needed). Undo with uninstall.sh.
# For Research Use Only. Not for use in diagnostic procedures.
set -euo pipefail

usage() { echo "usage: $0 [--prefix DIR] [--no-self-test]   (default prefix: ~/.local)"; }

main() {
  local prefix="${HOME}/.local" self_test=1
  while [ $# -gt 0 ]; do
    case "$1" in
      --prefix) prefix="${2:?--prefix needs a folder}"; shift 2 ;;
      --no-self-test) self_test=0; shift ;;
      -h|--help) usage; return 0 ;;
      *) usage >&2; return 2 ;;
    esac
  done
  local here app_dir staging
  here="$(cd "$(dirname "$0")" && pwd)"
  [ -x "$here/leukviewer/leukviewer" ] || { echo "error: $here/leukviewer/leukviewer not found: run install.sh from the unpacked archive" >&2; return 1; }
  prefix="$(mkdir -p "$prefix" && cd "$prefix" && pwd)"
  app_dir="$prefix/lib/leukviewer"

  echo "installing leukviewer into $app_dir"
  mkdir -p "$prefix/lib" "$prefix/bin" "$prefix/share/applications" "$prefix/share/icons/hicolor/256x256/apps"
  # Copy next to the old installation, then swap: an interrupted install never leaves a half-copied app.
  staging="$(mktemp -d "$prefix/lib/.leukviewer-install.XXXXXX")"
  cp -a "$here/leukviewer/." "$staging/"
  cp "$here/uninstall.sh" "$staging/uninstall.sh"
  chmod -R u+rwX,go+rX,go-w "$staging"
  if [ -e "$app_dir" ]; then
    mv "$app_dir" "$app_dir.old.$$"
    mv "$staging" "$app_dir"
    rm -rf "$app_dir.old.$$"
  else
    mv "$staging" "$app_dir"
  fi

  ln -sfn "$app_dir/leukviewer" "$prefix/bin/leukviewer"
  cp "$here/leukviewer.png" "$prefix/share/icons/hicolor/256x256/apps/leukviewer.png"
  sed "s|^Exec=.*|Exec=\"$app_dir/leukviewer\" %f|" "$here/leukviewer.desktop" > "$prefix/share/applications/leukviewer.desktop"
  command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database "$prefix/share/applications" 2>/dev/null || true
  command -v gtk-update-icon-cache >/dev/null 2>&1 && gtk-update-icon-cache -q -t "$prefix/share/icons/hicolor" 2>/dev/null || true

  # The window needs a few system libraries the bundle leaves to the desktop (Qt's xcb plugin): name the missing
  # ones and the command that installs them (as root with LEUKVIEWER_INSTALL_SYSTEM_PACKAGES=1: installs them).
  "$here/check-system-libraries.sh" --always --warn-only --bundle "$app_dir" \
    --plugin "$app_dir/_internal/PySide6/Qt/plugins/platforms/libqxcb.so" || true

  if [ "$self_test" = 1 ]; then
    echo "running the self-test of the installed app"
    "$app_dir/leukviewer" --self-test || { echo "error: the self-test failed (see above); the app is installed in $app_dir" >&2; return 1; }
  fi
  echo
  echo "leukviewer is installed: start it from the applications menu or with $prefix/bin/leukviewer"
  case ":$PATH:" in *":$prefix/bin:"*) ;; *) echo "($prefix/bin is not on your PATH; the menu entry works regardless)";; esac
  echo "uninstall: $app_dir/uninstall.sh"
  echo "For Research Use Only. Not for use in diagnostic procedures."
}

main "$@"
