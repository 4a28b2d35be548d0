"""A fresh Linux desktop lacks system libraries Qt's xcb plugin needs (libxcb-cursor0, libxcb-icccm4,
libxcb-keysyms1): ./run.sh and the bundle's install.sh name them and print the command that installs them, from
one list (packaging/linux/system-libraries.txt); and the real window starts on an X server (Xvfb, xcb)."""
import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
LINUX = REPO / "packaging" / "linux"
CHECK = LINUX / "check-system-libraries.sh"
FRESH_DESKTOP_LACKS = ("libxcb-cursor.so.0", "libxcb-icccm.so.4", "libxcb-keysyms.so.1")

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the xcb libraries are a Linux matter")


def listed() -> list[tuple[str, str]]:
    rows = []
    for line in (LINUX / "system-libraries.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            soname, package = line.split()[:2]
            rows.append((soname, package))
    return rows


def fake_ldconfig(folder: Path, present: list[str]) -> Path:
    """An ``ldconfig -p`` that knows only ``present`` (and a 32-bit copy of everything, which must not count)."""
    folder.mkdir(parents=True, exist_ok=True)
    cache = folder / "cache.txt"
    lines = [f"{len(present)} libs found in cache `/etc/ld.so.cache'"]
    lines += [f"\t{name} (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/{name}" for name in present]
    lines += [f"\t{name} (libc6) => /usr/lib/i386-linux-gnu/{name}" for name, _ in listed()]
    cache.write_text("\n".join(lines) + "\n")
    tool = folder / "ldconfig"
    tool.write_text(f"#!/bin/sh\ncat '{cache}'\n")
    tool.chmod(0o755)
    return tool


def run_check(*args, ldconfig: Path, platform: str | None = "xcb", extra_env=None):
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "LEUKVIEWER_INSTALL_SYSTEM_PACKAGES",
                                                            "XDG_SESSION_TYPE", "WAYLAND_DISPLAY")}
    env["LEUKVIEWER_LDCONFIG"] = str(ldconfig)
    if platform is not None:
        env["QT_QPA_PLATFORM"] = platform
    env.update(extra_env or {})
    return subprocess.run([str(CHECK), *args], capture_output=True, text=True, env=env, timeout=60)


def fresh_desktop(tmp_path) -> Path:
    if os.uname().machine != "x86_64":
        pytest.skip("the fake ldconfig writes x86-64 entries")
    return fake_ldconfig(tmp_path / "bin", [s for s, _ in listed() if s not in FRESH_DESKTOP_LACKS])


def test_missing_libraries_are_named_with_the_command_that_installs_them(tmp_path):
    done = run_check(ldconfig=fresh_desktop(tmp_path))
    assert done.returncode == 1
    for soname in FRESH_DESKTOP_LACKS:
        assert soname in done.stderr
    sudo = "" if os.geteuid() == 0 else "sudo "
    assert f"\n  {sudo}apt-get install libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1\n" in done.stderr
    assert "libxcb-image0" not in done.stderr          # only what is missing
    listing = run_check("--list-missing", ldconfig=fresh_desktop(tmp_path))
    assert listing.returncode == 0 and listing.stdout.split() == ["libxcb-cursor0", "libxcb-icccm4", "libxcb-keysyms1"]


def test_nothing_is_said_when_the_window_does_not_use_xcb_or_nothing_is_missing(tmp_path):
    missing = fresh_desktop(tmp_path)
    for platform in ("offscreen", "wayland", "minimal"):
        done = run_check(ldconfig=missing, platform=platform)
        assert done.returncode == 0 and done.stderr == "", platform
    assert run_check(ldconfig=missing, platform="wayland;xcb").returncode == 1
    assert run_check(ldconfig=missing, platform=None).returncode == 1      # Qt's default on X11 is xcb
    wayland_session = run_check(ldconfig=missing, platform=None,
                                extra_env={"XDG_SESSION_TYPE": "wayland", "WAYLAND_DISPLAY": "wayland-0"})
    assert wayland_session.returncode == 0 and "apt-get install libxcb-cursor0" in wayland_session.stderr
    assert run_check("--always", ldconfig=missing, platform="offscreen").returncode == 1
    complete = run_check(ldconfig=fake_ldconfig(tmp_path / "all", [s for s, _ in listed()]))
    assert complete.returncode == 0 and complete.stderr == ""


def test_a_library_the_bundle_ships_counts_as_present(tmp_path):
    bundle = tmp_path / "bundle" / "_internal"
    bundle.mkdir(parents=True)
    (bundle / "libxcb-cursor.so.0").write_bytes(b"")
    done = run_check("--bundle", str(tmp_path / "bundle"), "--warn-only", ldconfig=fresh_desktop(tmp_path))
    assert done.returncode == 0
    assert "apt-get install libxcb-icccm4 libxcb-keysyms1\n" in done.stderr and "libxcb-cursor0" not in done.stderr


def test_as_root_with_the_opt_in_it_installs_them_with_apt_get(tmp_path):
    """A fake apt-get "installs" by adding the libraries to the fake ldconfig's cache; a fake id says root."""
    ldconfig = fresh_desktop(tmp_path)
    calls = tmp_path / "apt-calls.txt"
    cache = tmp_path / "bin" / "cache.txt"
    (tmp_path / "map.txt").write_text("".join(f"{package} {soname}\n" for soname, package in listed()))
    (tmp_path / "bin" / "apt-get").write_text(f"""#!/usr/bin/env bash
echo "$*" >> '{calls}'
for p in "$@"; do
  case "$p" in -*|install) continue ;; esac
  s="$(awk -v p="$p" '$1 == p {{print $2}}' '{tmp_path / "map.txt"}')"
  [ -n "$s" ] || exit 100
  printf '\\t%s (libc6,x86-64) => /usr/lib/%s\\n' "$s" "$s" >> '{cache}'
done
""")
    (tmp_path / "bin" / "id").write_text("#!/bin/sh\necho 0\n")
    for tool in ("apt-get", "id"):
        (tmp_path / "bin" / tool).chmod(0o755)
    env = {"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    refused = run_check(ldconfig=ldconfig, extra_env=env)        # root, but no opt-in: only the message
    assert refused.returncode == 1 and not calls.exists()
    assert "\n  apt-get install libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1\n" in refused.stderr
    done = run_check(ldconfig=ldconfig, extra_env={**env, "LEUKVIEWER_INSTALL_SYSTEM_PACKAGES": "1"})
    assert done.returncode == 0, done.stderr
    assert calls.read_text().split() == ["install", "-y", "-q", "--no-install-recommends",
                                         "libxcb-cursor0", "libxcb-icccm4", "libxcb-keysyms1"]
    assert run_check(ldconfig=ldconfig).returncode == 0          # installed now


def fake_checkout(tmp_path) -> Path:
    """run.sh, its bootstrap and the check, with a .venv whose leukviewer only says it started."""
    root = tmp_path / "checkout"
    for rel in ("run.sh", "scripts/bootstrap.sh", "pyproject.toml", "packaging/linux/check-system-libraries.sh",
                "packaging/linux/system-libraries.txt"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, root / rel)
    venv_bin = root / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python").symlink_to(sys.executable)
    (venv_bin / "leukviewer").write_text('#!/bin/sh\necho "leukviewer started: $*"\n')
    (venv_bin / "leukviewer").chmod(0o755)
    (root / ".venv" / ".leukviewer-installed").write_text(
        hashlib.sha256((root / "pyproject.toml").read_bytes()).hexdigest() + "\n")
    return root


def test_run_sh_stops_before_the_window_with_the_install_command(tmp_path):
    root = fake_checkout(tmp_path)
    ldconfig = fresh_desktop(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "XDG_SESSION_TYPE",
                                                            "LEUKVIEWER_INSTALL_SYSTEM_PACKAGES")}
    env.update(LEUKVIEWER_LDCONFIG=str(ldconfig), PYTHON=sys.executable)

    def run(*args, **extra):
        return subprocess.run([str(root / "run.sh"), *args], capture_output=True, text=True, env={**env, **extra},
                              timeout=120)

    window = run("CASE")
    assert window.returncode == 1 and "leukviewer started" not in window.stdout
    assert re.search(r"\n  (sudo )?apt-get install libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1\n", window.stderr)
    assert run("CASE", QT_QPA_PLATFORM="offscreen").stdout == "leukviewer started: CASE\n"
    for headless in (("batch", "F", "--out", "O"), ("--self-test",), ("--version",)):
        done = run(*headless)
        assert done.returncode == 0 and done.stdout.startswith("leukviewer started"), headless


def test_the_bundle_installer_checks_the_same_list(tmp_path):
    """install.sh of the unpacked archive (the files build_installer.sh puts there) prints the same command."""
    staged = tmp_path / "unpacked"
    app = staged / "leukviewer"
    app.mkdir(parents=True)
    (app / "leukviewer").write_text("#!/bin/sh\necho leukviewer 0\n")
    (app / "leukviewer").chmod(0o755)
    for name in ("install.sh", "uninstall.sh", "leukviewer.desktop", "check-system-libraries.sh",
                 "system-libraries.txt"):
        shutil.copy2(LINUX / name, staged / name)
    shutil.copy2(REPO / "assets" / "icons" / "leukviewer.png", staged / "leukviewer.png")
    build = (REPO / "scripts" / "build_installer.sh").read_text()
    assert "packaging/linux/check-system-libraries.sh packaging/linux/system-libraries.txt" in build
    env = {**os.environ, "LEUKVIEWER_LDCONFIG": str(fresh_desktop(tmp_path)), "QT_QPA_PLATFORM": "offscreen"}
    env.pop("LEUKVIEWER_INSTALL_SYSTEM_PACKAGES", None)
    done = subprocess.run([str(staged / "install.sh"), "--prefix", str(tmp_path / "home/.local"), "--no-self-test"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr     # installed; the window's libraries are a warning
    assert re.search(r"\n  (sudo )?apt-get install libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1\n", done.stderr)
    assert (tmp_path / "home/.local/lib/leukviewer/leukviewer").is_file()


def test_the_readme_names_every_listed_library():
    readme = re.sub(r"\\\n\s*", "", (REPO / "README.md").read_text())
    assert "sudo apt-get install " + " ".join(package for _, package in listed()) + "\n" in readme
    for soname in FRESH_DESKTOP_LACKS:
        assert soname.split(".so")[0].replace("lib", "", 1) in readme


def test_the_real_window_starts_on_an_x_server_with_xcb(tiny_model_dir, tmp_path):
    """Not offscreen: Qt's xcb plugin on Xvfb, as on a desktop (.ci/run installs Xvfb and the libraries)."""
    required = os.environ.get("LEUKVIEWER_REQUIRE_XVFB") == "1"
    if not shutil.which("xvfb-run"):
        if required:
            pytest.fail("xvfb-run is not installed (.ci/run installs it)")
        pytest.skip("xvfb-run is not installed (apt-get install xvfb xauth)")
    env = {k: v for k, v in os.environ.items() if k not in ("LEUKVIEWER_MODEL", "DISPLAY", "WAYLAND_DISPLAY")}
    env["QT_QPA_PLATFORM"] = "xcb"
    check = subprocess.run([str(CHECK)], capture_output=True, text=True, env=env, timeout=60)
    if check.returncode != 0:
        if required:
            pytest.fail(check.stderr)
        pytest.skip(check.stderr)
    picture = tmp_path / "window.png"
    done = subprocess.run(["xvfb-run", "-a", "-s", "-screen 0 1366x768x24", sys.executable, "-m", "leukviewer",
                           "--smoke-test", "--model", str(tiny_model_dir), "--screenshot", str(picture)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "platform 'xcb'" in done.stdout and "image shown: UID_16_12_3_all.png" in done.stdout
    from PIL import Image

    image = Image.open(picture).convert("RGB")
    assert image.width >= 600 and image.height >= 400
    pixels = np.asarray(image).astype(int)
    assert pixels.std() > 20                                     # not a blank (one-colour) window
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 200    # text, image, histogram
    # The window fits the 1366x768 screen (the picture is the screen): the research-use notice's band is in it.
    assert "window 1366x768" in done.stdout and (image.width, image.height) == (1366, 768)
    notice = (np.abs(pixels - [0xFF, 0xF3, 0xC4]).max(axis=2) <= 6).sum(axis=1)
    assert notice.max() > 600, "the research-use notice is not on the screen"
