"""The installers: all four built from the checkout, their contents checked, the Linux one installed.

Marked ``installer``: they build wheels, resolve the lock against the package index and install the app
(a few minutes; ``-m "not installer"`` leaves them out). torch is the CPU wheel this project's machines
keep on disk (``TORCH_SPEC``, as in the Makefile), found with ``--find-links``; the vendor CUDA/ROCm
indexes are not reachable here, so their choice is tested on recorded ``nvidia-smi`` outputs instead
(``test_torch_builds.py``).
"""

from __future__ import annotations

import json
import os
import plistlib
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from distill_gui import __version__

pytestmark = pytest.mark.installer

REPO = Path(__file__).resolve().parents[2]
SIZE_LIMIT_MB = 40
TORCH_SPEC = os.environ.get("DISTILL_GUI_TEST_TORCH_SPEC", "torch==2.13.0")
TORCH_WHEELS = Path(os.environ.get("DISTILL_GUI_TEST_TORCH_WHEELS", "/opt/wheels"))
"""Where this machine keeps the CPU torch wheel (pip's find-links here)."""


def _ensure_debian_tools() -> str | None:
    """makensis and 7z from Debian's packages, installed when missing; the reason when they cannot be."""
    if shutil.which("makensis") and shutil.which("7z"):
        return None
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return "makensis/7z missing and apt-get is not usable here (install Debian's nsis and p7zip-full)"
    install = ["apt-get", "install", "-y", "-qq", "nsis", "p7zip-full"]
    if subprocess.run(install, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, check=False)
        done = subprocess.run(install, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            return f"apt-get could not install nsis/p7zip-full: {done.stderr.strip().splitlines()[-1:]}"
    return None


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    problem = _ensure_debian_tools()
    if problem:
        pytest.skip(problem)
    out = tmp_path_factory.mktemp("installers")
    started = time.perf_counter()
    subprocess.run([sys.executable, str(REPO / "packaging" / "build.py"), "--out", str(out)], check=True)
    print(f"make installers: {time.perf_counter() - started:.0f} s")
    return {
        "tar": out / f"distill-gui-{__version__}-linux-x86_64.tar.gz",
        "deb": out / f"distill-gui_{__version__}_amd64.deb",
        "exe": out / f"distill-gui-{__version__}-setup.exe",
        "zip": out / f"distill-gui-{__version__}-macos-arm64.zip",
        "work": out / "work",
    }


PAYLOAD = {"bootstrap.py", "torch_builds.py", f"distill_gui-{__version__}-py3-none-any.whl", "requirements.lock",
           "torch-requirement.txt", "distill-gui.png", "distill-gui.svg"}


def test_all_four_installers_are_built_and_small(built):
    for key in ("tar", "deb", "exe", "zip"):
        size = built[key].stat().st_size / 1e6
        print(f"{built[key].name}: {size:.1f} MB")
        assert 5 < size <= SIZE_LIMIT_MB, built[key].name


def test_linux_tarball_holds_install_sh_and_the_payload(built):
    with tarfile.open(built["tar"]) as tar:
        members = {m.name: m for m in tar.getmembers()}
    root = f"distill-gui-{__version__}"
    assert {f"{root}/payload/{n}" for n in PAYLOAD | {"uv"}} | {f"{root}/install.sh"} == set(members)
    assert members[f"{root}/install.sh"].mode & 0o111 and members[f"{root}/payload/uv"].mode & 0o111


def test_the_lock_pins_everything_but_torch_with_hashes(built):
    lock = (built["work"] / "requirements.lock").read_text(encoding="utf-8")
    pins = [line.split("==")[0] for line in lock.splitlines() if "==" in line and not line.startswith(("#", " "))]
    assert "transformers" in pins and "pyside6-essentials" in pins
    assert not [p for p in pins if p == "torch" or p.startswith(("nvidia-", "triton", "cuda-"))]
    assert lock.count("--hash=sha256:") >= len(pins)


def test_deb_installs_a_launcher_entry_and_icon_and_downloads_nothing(built):
    listing = subprocess.run(["dpkg-deb", "-c", str(built["deb"])], capture_output=True, text=True, check=True).stdout
    for path in ("./usr/bin/distill-gui", "./usr/share/applications/distill-gui.desktop",
                 "./usr/share/icons/hicolor/256x256/apps/distill-gui.png", "./opt/distill-gui/install.sh",
                 "./opt/distill-gui/payload/uv", "./opt/distill-gui/payload/bootstrap.py"):
        assert path in listing
    assert "-rwxr-xr-x root/root" in next(line for line in listing.splitlines() if line.endswith("./usr/bin/distill-gui"))
    control = subprocess.run(["dpkg-deb", "-I", str(built["deb"])], capture_output=True, text=True, check=True).stdout
    assert f"Version: {__version__}" in control and "Architecture: amd64" in control
    assert "postinst" not in control  # nothing runs (or downloads) while the package installs


def test_windows_setup_exe_holds_the_payload_and_an_uninstaller(built):
    listing = subprocess.run(["7z", "l", str(built["exe"])], capture_output=True, text=True, check=True).stdout
    names = {line.split()[-1].replace("\\", "/") for line in listing.splitlines() if line[:4].isdigit()}
    assert PAYLOAD | {"uv.exe", "distill-gui.ico"} <= {Path(n).name for n in names}
    assert any(n.endswith("uninstall.exe") or "Uninstall" in n for n in names) or "$PLUGINSDIR" in listing
    script = (REPO / "packaging" / "windows" / "installer.nsi").read_text(encoding="utf-8")
    assert "RequestExecutionLevel user" in script and "HKCU" in script and "HKLM" not in script


def test_macos_zip_is_an_app_bundle_with_a_valid_info_plist(built):
    with zipfile.ZipFile(built["zip"]) as archive:
        names = set(archive.namelist())
        plist = plistlib.loads(archive.read("distill-gui.app/Contents/Info.plist"))
        launcher = archive.getinfo("distill-gui.app/Contents/MacOS/distill-gui")
        icns = archive.read("distill-gui.app/Contents/Resources/distill-gui.icns")
    assert plist["CFBundleExecutable"] == "distill-gui" and plist["CFBundleShortVersionString"] == __version__
    assert plist["CFBundlePackageType"] == "APPL" and plist["CFBundleIconFile"] == "distill-gui.icns"
    assert (launcher.external_attr >> 16) & 0o111
    assert icns[:4] == b"icns"
    assert {f"distill-gui.app/Contents/Resources/payload/{n}" for n in PAYLOAD | {"uv"}} <= names


# ---- The Linux installer, end to end --------------------------------------------------------------


def _home_env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "DISTILL_GUI_", "VIRTUAL_ENV"))}
    env.update(HOME=str(home), QT_QPA_PLATFORM="offscreen", HF_HUB_OFFLINE="1",
               UV_CACHE_DIR=os.environ.get("UV_CACHE_DIR", str(Path.home() / ".cache" / "uv")))
    return env


def _files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() or p.is_symlink()}


@pytest.mark.skipif(not TORCH_WHEELS.is_dir(), reason=f"{TORCH_WHEELS}: no local CPU torch wheel to install")
def test_install_sh_self_test_failed_update_and_uninstall(built, tmp_path):
    with tarfile.open(built["tar"]) as tar:
        tar.extractall(tmp_path, filter="data")
    install_sh = tmp_path / f"distill-gui-{__version__}" / "install.sh"
    home = tmp_path / "home"
    home.mkdir()
    env = _home_env(home)
    override = ["--torch", "default", "--torch-spec", TORCH_SPEC, "--find-links", str(TORCH_WHEELS)]
    started = time.perf_counter()
    done = subprocess.run([str(install_sh), *override], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "Found: " in done.stdout and "Will install: torch==" in done.stdout
    installed = time.perf_counter() - started
    launcher = home / ".local" / "bin" / "distill-gui"
    desktop = (home / ".local" / "share" / "applications" / "distill-gui.desktop").read_text()
    assert f"Exec={launcher} app %F" in desktop and "Icon=distill-gui" in desktop
    assert (home / ".local" / "share" / "icons" / "hicolor" / "256x256" / "apps" / "distill-gui.png").is_file()
    app = home / ".local" / "share" / "distill-gui" / "app"
    log = next((app / "logs").glob("install-*.log")).read_text()
    assert "[5/5] Checking the environment" in log and "uv pip install" in log

    # The desktop entry's command opens the window on the demo pair (the shipped files), then exits 0.
    window = subprocess.run([str(launcher), "app", "--self-test"], env=env, capture_output=True, text=True, check=False, timeout=600)
    assert window.returncode == 0, window.stderr[-2000:]
    assert "self-test: ok: window shown on the demo pair" in window.stdout
    print(f"install.sh: {installed:.0f} s; install.sh to the self-test's end: {time.perf_counter() - started:.0f} s")
    doctor = subprocess.run([str(launcher), "doctor", "--json"], env=env, capture_output=True, text=True, check=False)
    report = json.loads(doctor.stdout)
    assert report["paths"]["installed_app"] == str(app) and report["driver"]["torch_matches"]

    # A failed update leaves the working install as it was.
    before = (app / "env" / "pyvenv.cfg").read_text()
    failed = subprocess.run([str(install_sh), "--torch", "default", "--torch-spec", "torch==0.0.1", "--find-links", str(TORCH_WHEELS)],
                            env=env, capture_output=True, text=True, check=False)
    assert failed.returncode == 1
    assert "The install failed" in failed.stdout and f"the previous install in {app / 'env'} is unchanged" in failed.stdout
    assert (app / "env" / "pyvenv.cfg").read_text() == before and not (app / "env.new").exists()
    assert subprocess.run([str(launcher), "--version"], env=env, capture_output=True, check=False).returncode == 0

    # --uninstall removes the app, its environment and shortcuts; runs, models and settings stay.
    kept_before = {f for f in _files_under(home) if not f.startswith(".local/share/distill-gui/app/")}
    kept_before -= {".local/bin/distill-gui", ".local/share/applications/distill-gui.desktop",
                    ".local/share/icons/hicolor/256x256/apps/distill-gui.png"}
    gone = subprocess.run([str(install_sh), "--uninstall"], env=env, capture_output=True, text=True, check=False)
    assert gone.returncode == 0, gone.stdout
    assert not app.exists() and not launcher.exists()
    assert _files_under(home) == kept_before
    assert any(f.startswith(".local/share/distill-gui/demo-student/") for f in kept_before)  # made by the self-test
    assert not (home / ".local" / "bin").exists()  # the folders made for the shortcuts go when empty


@pytest.mark.skipif(shutil.which("unshare") is None or os.geteuid() != 0, reason="needs root's unshare -n to cut the network")
def test_offline_install_from_a_wheelhouse_with_no_network(built, tmp_path):
    wheelhouse = tmp_path / "wheelhouse"
    subprocess.run([sys.executable, str(REPO / "packaging" / "build.py"), "--out", str(tmp_path / "build"),
                    "--wheelhouse", str(wheelhouse), "--torch-spec", TORCH_SPEC], check=True)
    with tarfile.open(built["tar"]) as tar:
        tar.extractall(tmp_path, filter="data")
    home = tmp_path / "home"
    home.mkdir()
    env = _home_env(home)
    env["UV_CACHE_DIR"] = str(tmp_path / "empty-uv-cache")  # nothing from earlier downloads
    install_sh = tmp_path / f"distill-gui-{__version__}" / "install.sh"
    done = subprocess.run(["unshare", "-n", str(install_sh), "--offline", str(wheelhouse), "--torch", "cpu", "--torch-spec", TORCH_SPEC,
                           "--no-shortcuts"], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "from the wheelhouse" in done.stdout
    python = home / ".local" / "share" / "distill-gui" / "app" / "env" / "bin" / "python"
    check = subprocess.run(["unshare", "-n", str(python), "-c", "import distill_gui.resources as r, torch; print(torch.__version__, r.demo_dir().is_dir())"],
                           env=env, capture_output=True, text=True, check=True)
    assert check.stdout.split() == [check.stdout.split()[0], "True"] and check.stdout.startswith(TORCH_SPEC.split("==")[1])
