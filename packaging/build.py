"""Build the installers for Linux, Windows and macOS, on Linux (``make installers``).

    python packaging/build.py [--out build/installers] [--only linux-tar,deb,windows,macos]
    python packaging/build.py --wheelhouse DIR [--torch-spec torch==2.13.0]   # for --offline installs

Every installer carries the same payload: the stdlib-only bootstrapper (``bootstrap.py`` and its copy of
``torch_builds.py``), the uv binary for its platform (taken from the ``uv`` wheel on PyPI, the version
this build runs), the app's wheel, ``requirements.lock`` (the app's dependencies pinned with hashes by
``uv pip compile``, without torch and the packages only torch needs: those come with the torch build
the bootstrapper picks) and ``torch-requirement.txt`` (the torch version the lock was resolved with).

Artifacts in ``--out``:

- ``distill-gui-<v>-linux-x86_64.tar.gz``: ``install.sh`` + payload (per-user install);
- ``distill-gui_<v>_amd64.deb``: the payload in ``/opt/distill-gui``, a ``/usr/bin/distill-gui`` that runs
  the bootstrapper for the user on first start, the desktop entry and icon (``postinst`` downloads nothing);
- ``distill-gui-<v>-setup.exe``: NSIS, per user, no admin rights (``makensis``, Debian's ``nsis``);
- ``distill-gui-<v>-macos-arm64.zip``: ``distill-gui.app`` (Info.plist, icon, first-start installer).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import plistlib
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGING = REPO / "packaging"
sys.path.insert(0, str(REPO))

from distill_gui import __version__  # noqa: E402
from distill_gui.resources import icon_png, icon_svg  # noqa: E402

APP = "distill-gui"
TARGETS = ("linux-tar", "deb", "windows", "macos")
UV_PLATFORMS = {
    # target -> (pip --platform tag, binary name in the wheel)
    "linux": ("manylinux_2_17_x86_64", "uv"),
    "windows": ("win_amd64", "uv.exe"),
    "macos": ("macosx_11_0_arm64", "uv"),
}
TORCH_ONLY_ROOTS = {"torch"}


def log(text: str) -> None:
    print(f"[build] {text}", flush=True)


def run(command: list, **kwargs) -> subprocess.CompletedProcess:
    log("$ " + " ".join(str(c) for c in command))
    return subprocess.run([str(c) for c in command], check=True, **kwargs)


def uv_executable() -> Path:
    """The uv this build runs (the ``uv`` package in this environment)."""
    from uv import find_uv_bin

    return Path(find_uv_bin())


# ---- Pieces of the payload -------------------------------------------------------------------------


def build_wheel(work: Path) -> Path:
    out = work / "wheel"
    shutil.rmtree(out, ignore_errors=True)
    run([sys.executable, "-m", "build", "--wheel", "--outdir", out, REPO], stdout=subprocess.DEVNULL)
    shutil.rmtree(REPO / "build" / "lib", ignore_errors=True)
    shutil.rmtree(REPO / "build" / "bdist.linux-x86_64", ignore_errors=True)
    return next(out.glob("distill_gui-*.whl"))


def compile_lock(work: Path) -> tuple[Path, str]:
    """requirements.lock (hashes, every platform) without torch and what only torch needs; the torch pin."""
    full = work / "full.lock"
    run([uv_executable(), "pip", "compile", REPO / "pyproject.toml", "--universal", "--generate-hashes",
         "--python-version", "3.10", "--no-header", "--quiet", "-o", full])
    blocks = parse_lock(full.read_text(encoding="utf-8"))
    torch_only = torch_only_packages(blocks)
    torch_versions = sorted({b["version"] for b in blocks if b["name"] == "torch"})
    kept = [b["text"] for b in blocks if b["name"] not in torch_only]
    lock = work / "requirements.lock"
    lock.write_text(
        f"# distill-gui {__version__}: its dependencies pinned with hashes by `uv pip compile --universal --generate-hashes`\n"
        f"# (packaging/build.py). Not here: torch and what only torch needs ({len(torch_only) - 1} packages);\n"
        "# the bootstrapper installs those from the index of the torch build it picks.\n" + "".join(kept),
        encoding="utf-8")
    return lock, f"torch=={torch_versions[-1]}"


def parse_lock(text: str) -> list[dict]:
    """The blocks of a ``uv pip compile`` output: name, version, the packages it is there for, its text."""
    blocks: list[dict] = []
    for line in text.splitlines(keepends=True):
        match = re.match(r"([A-Za-z0-9._-]+)==([^\s;]+)", line)
        if match:
            blocks.append({"name": match.group(1).lower(), "version": match.group(2), "via": set(), "text": line})
            continue
        if not blocks:
            continue
        blocks[-1]["text"] += line
        # "    # via torch" (one parent) or "    # via" followed by "    #   torch" lines
        via = re.match(r"\s*#\s+via\s+([A-Za-z0-9._-]+)\s*$", line) or re.match(r"\s*#\s{2,}([A-Za-z0-9._-]+)\s*$", line)
        if via:
            blocks[-1]["via"].add(via.group(1).lower())
    return blocks


def torch_only_packages(blocks: list[dict]) -> set[str]:
    """torch and every package that is in the lock only because of torch (CUDA libraries, triton, sympy...)."""
    needed_by: dict[str, set[str]] = {}
    for block in blocks:
        needed_by.setdefault(block["name"], set()).update(block["via"])
    only = set(TORCH_ONLY_ROOTS)
    changed = True
    while changed:
        changed = False
        for name, parents in needed_by.items():
            if name not in only and parents and parents <= only:
                only.add(name)
                changed = True
    return only


def fetch_uv(work: Path, target: str) -> Path:
    """The uv binary for ``target``, from the uv wheel of this build's uv version."""
    tag, binary = UV_PLATFORMS[target]
    version = importlib.metadata.version("uv")
    folder = work / "uv" / target
    found = folder / binary
    if found.is_file():
        return found
    download = work / "uv-wheels" / target
    run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "--platform", tag,
         "--python-version", "3.11", "-d", download, f"uv=={version}"])
    wheel = next(download.glob(f"uv-{version}-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        member = next(n for n in archive.namelist() if n.endswith(f".data/scripts/{binary}"))
        folder.mkdir(parents=True, exist_ok=True)
        found.write_bytes(archive.read(member))
    found.chmod(0o755)
    return found


def torch_builds_source() -> Path:
    return REPO / "distill_gui" / "core" / "torch_builds.py"


def payload_files(work: Path, target: str, wheel: Path, lock: Path, torch_pin: str) -> dict[str, Path | bytes]:
    """Name in the payload -> a file or bytes."""
    uv = fetch_uv(work, "linux" if target in ("linux-tar", "deb") else target)
    files: dict[str, Path | bytes] = {
        "bootstrap.py": PACKAGING / "bootstrap.py",
        "torch_builds.py": torch_builds_source(),
        uv.name: uv,
        wheel.name: wheel,
        "requirements.lock": lock,
        "torch-requirement.txt": (torch_pin + "\n").encode(),
        f"{APP}.png": icon_png(256),
        f"{APP}.svg": icon_svg(),
    }
    return files


# ---- Archives --------------------------------------------------------------------------------------


def _mode(name: str, executable: set[str]) -> int:
    return 0o755 if Path(name).name in executable else 0o644


EXECUTABLE = {"uv", "install.sh", "distill-gui", "install.command"}


def add_tar(tar: tarfile.TarFile, name: str, source: Path | bytes) -> None:
    data = source.read_bytes() if isinstance(source, Path) else source
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = _mode(name, EXECUTABLE)
    info.mtime = int(time.time())
    tar.addfile(info, io.BytesIO(data))


def add_zip(archive: zipfile.ZipFile, name: str, source: Path | bytes) -> None:
    data = source.read_bytes() if isinstance(source, Path) else source
    info = zipfile.ZipInfo(name, date_time=time.localtime()[:6])
    info.external_attr = (stat.S_IFREG | _mode(name, EXECUTABLE)) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(info, data)


def build_linux_tar(out: Path, payload: dict) -> Path:
    root = f"{APP}-{__version__}"
    path = out / f"{root}-linux-x86_64.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        add_tar(tar, f"{root}/install.sh", PACKAGING / "linux" / "install.sh")
        for name, source in payload.items():
            add_tar(tar, f"{root}/payload/{name}", source)
    return path


def build_deb(out: Path, work: Path, payload: dict) -> Path:
    root = work / "deb"
    shutil.rmtree(root, ignore_errors=True)
    opt = root / "opt" / APP
    for name, source in payload.items():
        target = opt / "payload" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes() if isinstance(source, Path) else source)
        target.chmod(_mode(name, EXECUTABLE))
    shutil.copyfile(PACKAGING / "linux" / "install.sh", opt / "install.sh")
    (opt / "install.sh").chmod(0o755)
    launcher = root / "usr" / "bin" / APP
    launcher.parent.mkdir(parents=True)
    shutil.copyfile(PACKAGING / "linux" / "deb-launcher.sh", launcher)
    launcher.chmod(0o755)
    icon = root / "usr" / "share" / "icons" / "hicolor" / "256x256" / "apps" / f"{APP}.png"
    icon.parent.mkdir(parents=True)
    shutil.copyfile(icon_png(256), icon)
    desktop = root / "usr" / "share" / "applications" / f"{APP}.desktop"
    desktop.parent.mkdir(parents=True)
    desktop.write_text(
        "[Desktop Entry]\nType=Application\nName=distill-gui\nGenericName=Knowledge distillation\n"
        "Comment=Distil a large language model into a small one\nExec=/usr/bin/distill-gui app %F\n"
        f"Icon={APP}\nTerminal=false\nCategories=Development;Science;\nStartupWMClass=distill-gui\n", encoding="utf-8")
    control = root / "DEBIAN" / "control"
    control.parent.mkdir(parents=True)
    size_kib = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) // 1024
    control.write_text(
        f"Package: {APP}\nVersion: {__version__}\nSection: science\nPriority: optional\nArchitecture: amd64\n"
        f"Installed-Size: {size_kib}\nDepends: libc6, libgl1, libegl1, libxkbcommon0, libfontconfig1, libdbus-1-3\n"
        "Recommends: libxcb-cursor0\nMaintainer: distill-gui developers <distill-gui@users.noreply.github.com>\n"
        "Description: desktop app for knowledge distillation of language models\n"
        " Each user's first start installs the app's Python environment (with the torch\n"
        " build that fits the GPU driver) under their own data folder; nothing is\n"
        " downloaded while the package installs.\n", encoding="utf-8")
    path = out / f"{APP}_{__version__}_amd64.deb"
    run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", root, path], stdout=subprocess.DEVNULL)
    return path


def build_windows(out: Path, work: Path, payload: dict) -> Path:
    makensis = shutil.which("makensis")
    if makensis is None:
        raise SystemExit("makensis not found: install Debian's nsis package (apt-get install -y nsis) and run again")
    stage = work / "windows"
    shutil.rmtree(stage, ignore_errors=True)
    (stage / "payload").mkdir(parents=True)
    for name, source in payload.items():
        (stage / "payload" / name).write_bytes(source.read_bytes() if isinstance(source, Path) else source)
    shutil.copyfile(PACKAGING / "icon" / f"{APP}.ico", stage / f"{APP}.ico")
    wheel = next(n for n in payload if n.endswith(".whl"))
    path = out / f"{APP}-{__version__}-setup.exe"
    run([makensis, "-V2", "-WX", f"-DVERSION={__version__}", f"-DSTAGE={stage}", f"-DWHEEL={wheel}",
         f"-DOUTFILE={path}", PACKAGING / "windows" / "installer.nsi"])
    return path


def info_plist() -> dict:
    return {
        "CFBundleName": APP,
        "CFBundleDisplayName": APP,
        "CFBundleIdentifier": "io.github.distill-gui",
        "CFBundleVersion": __version__,
        "CFBundleShortVersionString": __version__,
        "CFBundlePackageType": "APPL",
        "CFBundleExecutable": APP,
        "CFBundleIconFile": f"{APP}.icns",
        "CFBundleInfoDictionaryVersion": "6.0",
        "LSMinimumSystemVersion": "11.0",
        "LSArchitecturePriority": ["arm64"],
        "NSHighResolutionCapable": True,
        "LSApplicationCategoryType": "public.app-category.developer-tools",
    }


def build_macos(out: Path, payload: dict) -> Path:
    app = f"{APP}.app/Contents"
    path = out / f"{APP}-{__version__}-macos-arm64.zip"
    with zipfile.ZipFile(path, "w") as archive:
        add_zip(archive, f"{app}/Info.plist", plistlib.dumps(info_plist()))
        add_zip(archive, f"{app}/MacOS/{APP}", PACKAGING / "macos" / "launcher.sh")
        add_zip(archive, f"{app}/Resources/install.command", PACKAGING / "macos" / "install.command")
        add_zip(archive, f"{app}/Resources/install.sh", PACKAGING / "linux" / "install.sh")
        add_zip(archive, f"{app}/Resources/{APP}.icns", PACKAGING / "icon" / f"{APP}.icns")
        for name, source in payload.items():
            add_zip(archive, f"{app}/Resources/payload/{name}", source)
    return path


# ---- Wheelhouse for offline installs ---------------------------------------------------------------


def build_wheelhouse(folder: Path, work: Path, torch_spec: str | None) -> Path:
    """Every wheel a Linux x86_64 install needs, for ``bootstrap.py --offline FOLDER`` (this Python's version)."""
    wheel = build_wheel(work)
    lock, torch_pin = compile_lock(work)
    folder.mkdir(parents=True, exist_ok=True)
    run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes", "--only-binary=:all:",
         "-r", lock, "-d", folder])
    run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", torch_spec or torch_pin, "-d", folder])
    shutil.copyfile(wheel, folder / wheel.name)
    return folder


# ---- Main ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "build" / "installers")
    parser.add_argument("--only", default=",".join(TARGETS), help=f"comma-separated subset of {', '.join(TARGETS)}")
    parser.add_argument("--wheelhouse", type=Path, help="instead: download every wheel an offline Linux install needs into this folder")
    parser.add_argument("--torch-spec", help="with --wheelhouse: the torch requirement to put in it (default: the locked version)")
    args = parser.parse_args(argv)
    work = args.out / "work"
    work.mkdir(parents=True, exist_ok=True)
    if args.wheelhouse:
        folder = build_wheelhouse(args.wheelhouse, work, args.torch_spec)
        log(f"wheelhouse: {folder} ({sum(p.stat().st_size for p in folder.iterdir()) / 2**20:.0f} MB)")
        return 0
    targets = [t.strip() for t in args.only.split(",") if t.strip()]
    unknown = set(targets) - set(TARGETS)
    if unknown:
        parser.error(f"--only {','.join(sorted(unknown))}: choose from {', '.join(TARGETS)}")
    wheel = build_wheel(work)
    lock, torch_pin = compile_lock(work)
    built = []
    for target in targets:
        payload = payload_files(work, target, wheel, lock, torch_pin)
        if target == "linux-tar":
            built.append(build_linux_tar(args.out, payload))
        elif target == "deb":
            built.append(build_deb(args.out, work, payload))
        elif target == "windows":
            built.append(build_windows(args.out, work, payload))
        elif target == "macos":
            built.append(build_macos(args.out, payload))
    for path in built:
        log(f"{path.name}: {path.stat().st_size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
