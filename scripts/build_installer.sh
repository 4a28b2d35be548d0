#!/usr/bin/env bash
# Build the installer for this platform in one command:
#   scripts/build_installer.sh [--allow-missing-model] [--no-self-test]
# Linux: dist/leukviewer/ (the app folder) and dist/leukviewer-<version>-linux-<arch>.tar.gz (the folder plus
# install.sh, uninstall.sh, a .desktop file and the icon). macOS: dist/leukviewer.app and a .dmg. Windows (Git
# Bash): dist/leukviewer/ and, when Inno Setup's iscc is on PATH, dist/leukviewer-<version>-setup.exe.
# Sets up .venv and PyInstaller (the "build" extra) first; the build itself needs no network. Output folders:
# LEUKVIEWER_DIST (default dist) and LEUKVIEWER_BUILD (PyInstaller's work folder, default build/pyinstaller).
# For Research Use Only. Not for use in diagnostic procedures.
set -euo pipefail
cd "$(dirname "$0")/.."

DIST="${LEUKVIEWER_DIST:-dist}"
WORK="${LEUKVIEWER_BUILD:-build/pyinstaller}"
allow_missing_model=0
self_test=1
for arg in "$@"; do
  case "$arg" in
    --allow-missing-model) allow_missing_model=1 ;;
    --no-self-test) self_test=0 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "unknown option: $arg (see --help)" >&2; exit 2 ;;
  esac
done

if [ ! -f assets/models/leukviewer-b3/model.json ]; then
  if [ "$allow_missing_model" = 1 ]; then
    echo "WARNING: building without the bundled model (assets/models/leukviewer-b3/ is missing)" >&2
    self_test=0
  else
    echo "error: the bundled model is missing: assets/models/leukviewer-b3/model.json. An installer without it" >&2
    echo "cannot analyse anything until a model folder is chosen; use --allow-missing-model to build anyway." >&2
    exit 1
  fi
fi

scripts/bootstrap.sh
PY=.venv/bin/python
if ! "$PY" -c "import PyInstaller" 2>/dev/null; then
  echo "installing PyInstaller into .venv (the build extra)" >&2
  "$PY" -m pip install --quiet -e '.[build]'
fi

read -r name version < <("$PY" -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; print(p["name"], p["version"])')
os="$(uname -s)"
arch="$(uname -m)"
start=$(date +%s)
echo "building $name $version for $os $arch (PyInstaller, one folder)" >&2
.venv/bin/pyinstaller --noconfirm --clean --log-level WARN --distpath "$DIST" --workpath "$WORK" \
  build_installer.spec
echo "PyInstaller finished in $(( $(date +%s) - start )) s" >&2

case "$os" in
  Darwin) app="$DIST/$name.app/Contents/MacOS/$name" ;;
  MINGW*|MSYS*|CYGWIN*) app="$DIST/$name/$name-cli.exe" ;;
  *) app="$DIST/$name/$name" ;;
esac

if [ "$self_test" = 1 ]; then
  # The workstations are offline: prove the bundle works without a network (a private network namespace).
  if unshare -rn true 2>/dev/null; then
    echo "self-test of the bundle, without network (unshare -rn):" >&2
    unshare -rn "$app" --self-test
  else
    echo "self-test of the bundle (unshare is not available here, so the network is not cut off; the self-test" >&2
    echo "still refuses every connection the app itself tries):" >&2
    "$app" --self-test
  fi
fi

case "$os" in
  Linux)
    base="$name-$version-linux-$arch"
    stage="$DIST/$base"
    rm -rf "$stage" "$DIST/$base.tar.gz"
    mkdir -p "$stage"
    cp -al "$DIST/$name" "$stage/$name" 2>/dev/null || cp -a "$DIST/$name" "$stage/$name"  # hard links: no copy
    rm -f "$stage/$name/$name-probe"  # a test build's probe (LEUKVIEWER_BUILD_PROBE=1) never ships
    cp packaging/linux/install.sh packaging/linux/uninstall.sh packaging/linux/leukviewer.desktop \
       packaging/linux/check-system-libraries.sh packaging/linux/system-libraries.txt "$stage/"
    cp assets/icons/leukviewer.png "$stage/leukviewer.png"
    glibc="$(find "$DIST/$name" -type f -name '*.so*' -exec objdump -T {} + 2>/dev/null \
             | grep -o 'GLIBC_2\.[0-9]*' | sort -t. -k2 -n -u | tail -1 | sed 's/GLIBC_//')"
    built_on="$( (. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME") || uname -sr)"
    size="$(du -sh "$stage/$name" | cut -f1)"
    sed -e "s|@VERSION@|$version|g" -e "s|@GLIBC@|${glibc:-?}|g" -e "s|@BUILT_ON@|$built_on|g" \
        -e "s|@SIZE@|$size|g" packaging/linux/README.txt > "$stage/README.txt"
    compressor=gzip
    command -v pigz >/dev/null 2>&1 && compressor=pigz
    tar -C "$DIST" -cf - "$base" | "$compressor" -6 > "$DIST/$base.tar.gz"
    echo
    echo "folder:  $DIST/$name  $(du -sb "$stage/$name" | cut -f1) bytes ($size)"
    echo "archive: $DIST/$base.tar.gz  $(stat -c %s "$DIST/$base.tar.gz") bytes ($(du -h "$DIST/$base.tar.gz" | cut -f1))"
    echo "sha256:  $(sha256sum "$DIST/$base.tar.gz" | cut -d' ' -f1)"
    echo "needs glibc ${glibc:-?} or newer (built on $built_on)"
    ;;
  Darwin)
    dmg="$DIST/$name-$version-macos-$arch.dmg"
    rm -f "$dmg"
    hdiutil create -volname "$name $version" -srcfolder "$DIST/$name.app" -ov -format UDZO "$dmg"
    echo "app: $DIST/$name.app   disk image: $dmg"
    ;;
  MINGW*|MSYS*|CYGWIN*)
    if command -v iscc >/dev/null 2>&1; then
      iscc "/DAppVersion=$version" packaging/windows/leukviewer.iss
      echo "installer: $DIST/$name-$version-setup.exe"
    else
      echo "folder: $DIST/$name (install Inno Setup 6 and run: iscc /DAppVersion=$version packaging/windows/leukviewer.iss)"
    fi
    ;;
esac
echo "built in $(( $(date +%s) - start )) s. For Research Use Only. Not for use in diagnostic procedures."
