#!/usr/bin/env bash
# Are the system libraries the review window needs on Linux installed (Qt's xcb platform plugin)? ./run.sh runs
# this before it starts the window, the bundle's install.sh after it installs; both read system-libraries.txt
# beside this script (the one list). When some are missing it names them and prints the exact command that
# installs them (Debian/Ubuntu), and exits 1 instead of letting Qt fail with "could not load the Qt platform
# plugin xcb". Run as root with LEUKVIEWER_INSTALL_SYSTEM_PACKAGES=1, it installs them itself with apt-get.
#
# usage: check-system-libraries.sh [--always] [--warn-only] [--bundle DIR] [--plugin FILE]
#   (default)      check only when the window will use xcb: on Linux, with QT_QPA_PLATFORM unset or naming xcb
#                  (not with offscreen, wayland, ...; never on macOS or Windows)
#   --always       check whatever QT_QPA_PLATFORM says (the installer: the desktop's setting is not known)
#   --warn-only    print the message but exit 0
#   --bundle DIR   a library anywhere under DIR (an installed bundle that ships its own copy) counts as present
#   --plugin FILE  also report what `ldd FILE` cannot find (Qt's libqxcb.so: catches a library the list lacks)
#   --list-missing only print the missing packages' names on one line (for scripts: CI installs them)
# Environment: LEUKVIEWER_SYSTEM_CHECK=0 skips the check; LEUKVIEWER_LDCONFIG is the ldconfig asked (tests point
# it at a fake one).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
list="$here/system-libraries.txt"
always=0 warn_only=0 list_missing=0 bundle="" plugin=""
while [ $# -gt 0 ]; do
  case "$1" in
    --always) always=1; shift ;;
    --warn-only) warn_only=1; shift ;;
    --list-missing) list_missing=1; shift ;;
    --bundle) bundle="${2:?--bundle needs a folder}"; shift 2 ;;
    --plugin) plugin="${2:?--plugin needs a file}"; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: $0 [--always] [--warn-only] [--list-missing] [--bundle DIR] [--plugin FILE]" >&2; exit 2 ;;
  esac
done

[ "${LEUKVIEWER_SYSTEM_CHECK:-1}" = 0 ] && exit 0
[ "$(uname -s)" = Linux ] || exit 0          # macOS and Windows bring their own platform plugins
fallback_only=0                              # the window can still start on another platform
if [ "$always" = 0 ]; then
  platform="${QT_QPA_PLATFORM:-}"
  if [ -n "$platform" ]; then
    case "$platform" in *xcb*) ;; *) exit 0 ;; esac   # offscreen, wayland, vnc, ...: xcb is not used
  elif [ "${XDG_SESSION_TYPE:-}" = wayland ] && [ -n "${WAYLAND_DISPLAY:-}" ]; then
    fallback_only=1                          # Qt tries wayland first on a Wayland desktop, xcb (XWayland) after
  fi
fi
[ -r "$list" ] || { echo "leukviewer: $list is missing: cannot check the system libraries" >&2; exit 0; }

machine="$(uname -m)"
case "$machine" in                           # ldconfig's tag for this machine's libraries (not the i386 ones)
  x86_64) abi_tag="x86-64" ;;
  aarch64) abi_tag="AArch64" ;;
  *) abi_tag="" ;;
esac

known_libraries() {
  # One library file name per line: what the dynamic loader finds, and what the bundle ships.
  local ldconfig="${LEUKVIEWER_LDCONFIG:-}"
  if [ -z "$ldconfig" ]; then
    ldconfig="$(command -v ldconfig || true)"
    for cand in /sbin/ldconfig /usr/sbin/ldconfig; do
      [ -z "$ldconfig" ] && [ -x "$cand" ] && ldconfig="$cand"
    done
  fi
  if [ -n "$ldconfig" ]; then
    "$ldconfig" -p 2>/dev/null | awk -v tag="$abi_tag" 'NF >= 4 && $2 ~ /^\(/ && (tag == "" || index($2, tag)) {print $1}'
  else                                       # no ldconfig: look where the loader looks
    local dir multiarch="$machine-linux-gnu"
    for dir in ${LD_LIBRARY_PATH//:/ } "/lib/$multiarch" "/usr/lib/$multiarch" /lib64 /usr/lib64 /lib /usr/lib; do
      [ -d "$dir" ] && find "$dir" -maxdepth 1 -name 'lib*.so*' -printf '%f\n' 2>/dev/null
    done
  fi
  [ -z "$bundle" ] || find "$bundle" -name 'lib*.so*' -printf '%f\n' 2>/dev/null
  true
}

missing_files=() missing_packages=() unknown_files=()
scan() {
  missing_files=() missing_packages=() unknown_files=()
  local present soname package
  present="$(known_libraries | sort -u)"
  while read -r soname package _; do
    case "$soname" in ''|'#'*) continue ;; esac
    if ! grep -qxF "$soname" <<<"$present"; then
      missing_files+=("$soname")
      case " ${missing_packages[*]-} " in *" $package "*) ;; *) missing_packages+=("$package") ;; esac
    fi
  done < "$list"
  if [ -n "$plugin" ] && [ -f "$plugin" ] && command -v ldd >/dev/null 2>&1; then
    while read -r soname; do
      [ -n "$soname" ] || continue
      grep -qxF "$soname" <<<"$present" && continue
      awk -v s="$soname" '$1 == s {found = 1} END {exit !found}' "$list" && continue
      case " ${unknown_files[*]-} " in *" $soname "*) ;; *) unknown_files+=("$soname") ;; esac
    done < <(ldd "$plugin" 2>/dev/null | awk '$2 == "=>" && $3 == "not" {print $1}')
  fi
}

scan
if [ "$list_missing" = 1 ]; then
  echo "${missing_packages[*]-}"
  exit 0
fi
[ ${#missing_files[@]} -eq 0 ] && [ ${#unknown_files[@]} -eq 0 ] && exit 0

if [ ${#missing_packages[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && [ "${LEUKVIEWER_INSTALL_SYSTEM_PACKAGES:-0}" = 1 ] \
   && command -v apt-get >/dev/null 2>&1; then
  echo "leukviewer: installing the system libraries the review window needs: ${missing_packages[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "${missing_packages[@]}" >&2 \
    || { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends "${missing_packages[@]}" >&2; } \
    || echo "leukviewer: apt-get could not install them" >&2
  scan
  [ ${#missing_files[@]} -eq 0 ] && [ ${#unknown_files[@]} -eq 0 ] && exit 0
fi

sudo="sudo "
[ "$(id -u)" = 0 ] && sudo=""
{
  echo "leukviewer: the review window needs system libraries that are not installed on this machine:"
  while read -r soname package what; do
    case " ${missing_files[*]-} " in *" $soname "*) echo "  $soname  (Debian/Ubuntu package $package: $what)" ;; esac
  done < <(grep -v '^#' "$list")
  for soname in "${unknown_files[@]-}"; do
    [ -n "$soname" ] && echo "  $soname  (needed by $(basename "$plugin"); \`apt-file search $soname\` names its package)"
  done
  if [ ${#missing_packages[@]} -gt 0 ]; then
    echo "Install them with:"
    echo "  ${sudo}apt-get install ${missing_packages[*]}"
    echo "(other distributions: install the packages that provide the files above; as root,"
    echo " LEUKVIEWER_INSTALL_SYSTEM_PACKAGES=1 lets this check run apt-get itself)"
  fi
  if [ "$fallback_only" = 1 ]; then
    echo "(this is a Wayland session: the window may still start on Wayland; X11 needs the libraries)"
  else
    echo "Without them Qt stops with \"could not load the Qt platform plugin xcb\". The batch command"
    echo "(leukviewer batch ...) needs none of them; QT_QPA_PLATFORM=wayland uses Wayland instead."
  fi
} >&2
if [ "$warn_only" = 1 ] || [ "$fallback_only" = 1 ]; then exit 0; fi
exit 1
