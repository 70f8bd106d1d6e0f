"""Install, repair or uninstall distill-gui for the current user (standard library only).

The installers run this with a Python found or fetched by the uv they carry:

    python bootstrap.py                      # detect the GPU, install the matching torch, then the app
    python bootstrap.py --torch cu126        # choose the torch build yourself (cpu, cu126, cu128, ...)
    python bootstrap.py --offline WHEELHOUSE # air-gapped: everything from a folder of wheels, no network
    python bootstrap.py --repair             # rebuild the environment with the recorded choices
    python bootstrap.py --uninstall [--purge]

It looks at the hardware (``torch_builds``), says what it found and what it will install, then builds
a new environment beside the current one with uv: torch from the index of the chosen build, the app's
dependencies pinned with hashes by the lock file made at build time, the app's wheel. Only when all of
that installed and imports does the new environment replace the old one, so a failed install leaves
the previous one working. Every step goes to a log file under the app folder.

Layout (``<data>`` is ``~/.local/share/distill-gui``, ``%LOCALAPPDATA%\\distill-gui`` or
``~/Library/Application Support/distill-gui``): ``<data>/app/env`` the environment, ``<data>/app/installer``
a copy of this payload (for repair and uninstall), ``<data>/app/logs``, ``<data>/app/install.json``.
Runs, the demo student and settings live beside ``app`` and are kept by ``--uninstall`` unless ``--purge``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
try:
    import torch_builds  # the copy the installer build puts beside this file
except ImportError:  # run from a checkout
    from distill_gui.core import torch_builds

APP = "distill-gui"
LOCK_FILE = "requirements.lock"
TORCH_PIN_FILE = "torch-requirement.txt"
SYSTEM = platform.system()


class InstallError(Exception):
    """A step failed: the message says what happened and what to do."""


# ---- Places ----------------------------------------------------------------------------------------


def data_dir() -> Path:
    """The user data folder (the same one ``platformdirs.user_data_dir("distill-gui")`` gives the app)."""
    home = Path.home()
    if SYSTEM == "Windows":
        return Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local") / APP
    if SYSTEM == "Darwin":
        return home / "Library" / "Application Support" / APP
    return Path(os.environ.get("XDG_DATA_HOME") or home / ".local" / "share") / APP


def config_dir() -> Path:
    if SYSTEM == "Windows":
        return data_dir()
    if SYSTEM == "Darwin":
        return Path.home() / "Library" / "Preferences"
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / APP


def env_python(env: Path) -> Path:
    return env / ("Scripts/python.exe" if SYSTEM == "Windows" else "bin/python")


def env_program(env: Path) -> Path:
    return env / ("Scripts/distill-gui.exe" if SYSTEM == "Windows" else "bin/distill-gui")


def uv_binary(payload: Path) -> Path:
    return payload / ("uv.exe" if SYSTEM == "Windows" else "uv")


# ---- Output and log --------------------------------------------------------------------------------


class Log:
    """Prints for the person and writes everything, with times, to the log file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.file = path.open("a", encoding="utf-8")
        self.write(f"distill-gui installer on {platform.platform()}, Python {sys.version.split()[0]}, argv {sys.argv[1:]}")

    def write(self, text: str) -> None:
        self.file.write(f"{time.strftime('%H:%M:%S')} {text}\n")
        self.file.flush()

    def say(self, text: str) -> None:
        print(text, flush=True)
        self.write(text)

    def run(self, command: list[str], env: dict | None = None) -> None:
        """Run a step's command; its output shows live (uv's bars with sizes on a terminal) and is logged."""
        self.write("$ " + " ".join(str(c) for c in command))
        interactive = sys.stderr.isatty()
        started = time.time()
        process = subprocess.Popen([str(c) for c in command], env={**os.environ, **(env or {})},
                                   stdout=subprocess.PIPE, stderr=None if interactive else subprocess.STDOUT, text=True,
                                   encoding="utf-8", errors="replace")
        tail = []
        for line in process.stdout:
            print(line, end="", flush=True)
            self.file.write(line)
            tail = (tail + [line.rstrip()])[-15:]
        code = process.wait()
        self.write(f"exit {code} after {time.time() - started:.1f} s")
        if code != 0:
            last = next((t for t in reversed(tail) if t.strip()), "see the log")
            raise InstallError(f"{Path(command[0]).name} {' '.join(str(c) for c in command[1:3])} failed (exit {code}): {last}")


# ---- Install ---------------------------------------------------------------------------------------


def plan_torch(args, payload: Path, log: Log, recorded: dict) -> tuple[str, str | None, str]:
    """(requirement, index URL or None, description) for the torch step; says what it found."""
    hardware = torch_builds.detect()
    log.say(f"Found: {hardware.describe()}")
    for note in hardware.notes:
        log.say(f"  ({note})")
    requested = args.torch or recorded.get("torch_build") or "auto"
    choice = torch_builds.choose(hardware, requested)
    requirement = args.torch_spec or recorded.get("torch_spec") or (payload / TORCH_PIN_FILE).read_text(encoding="utf-8").strip()
    where = "the wheelhouse" if args.offline else (choice.index_url or "the default package index")
    log.say(f"Will install: {requirement} ({choice.build} build, {choice.reason}) from {where}, then distill-gui from the lock file")
    return requirement, choice.index_url, choice.build


def install(args, payload: Path, app: Path, log: Log) -> int:
    recorded = read_record(app) if args.repair else {}
    if args.repair and not recorded:
        raise InstallError(f"nothing to repair: no install record in {app} (run the installer without --repair)")
    requirement, index, build = plan_torch(args, payload, log, recorded)
    find_links = args.find_links or recorded.get("find_links") or []
    uv = uv_binary(payload)
    wheel = next(payload.glob("distill_gui-*.whl"), None)
    if not uv.is_file() or wheel is None or not (payload / LOCK_FILE).is_file():
        raise InstallError(f"{payload}: the installer's files are incomplete (uv, the wheel or {LOCK_FILE} is missing); download the installer again")
    common = ["--no-progress"] if not sys.stderr.isatty() else []
    sources = []
    uv_env = {"UV_PYTHON_DOWNLOADS": "never"} if args.offline else {}
    if args.offline:
        uv_env["UV_OFFLINE"] = "1"
        sources = ["--offline", "--no-index", "--find-links", str(args.offline)]
    for link in find_links:
        sources += ["--find-links", str(link)]

    new_env, env = app / "env.new", app / "env"
    steps = 5
    log.say(f"[1/{steps}] Creating the environment in {new_env}")
    shutil.rmtree(new_env, ignore_errors=True)
    try:
        log.run([uv, "venv", *common, "--relocatable", "--python", sys.executable, new_env], env=uv_env)
        python = env_python(new_env)
        log.say(f"[2/{steps}] Installing {requirement} ({build})")
        torch_index = ["--index-url", index] if index and not args.offline else []
        log.run([uv, "pip", "install", *common, "--python", python, requirement, *torch_index, *sources], env=uv_env)
        log.say(f"[3/{steps}] Installing the locked dependencies ({LOCK_FILE}, with hashes)")
        log.run([uv, "pip", "install", *common, "--python", python, "--require-hashes", "--no-deps",
                 "-r", payload / LOCK_FILE, *sources], env=uv_env)
        log.say(f"[4/{steps}] Installing {wheel.name}")
        log.run([uv, "pip", "install", *common, "--python", python, "--no-deps", wheel, *sources], env=uv_env)
        log.say(f"[5/{steps}] Checking the environment")
        log.run([uv, "pip", "check", "--python", python], env=uv_env)
        log.run([python, "-c", "import distill_gui, torch, transformers, PySide6; print('torch', torch.__version__, 'imports')"])
    except (InstallError, OSError) as exc:
        shutil.rmtree(new_env, ignore_errors=True)
        kept = f"; the previous install in {env} is unchanged" if env.is_dir() else ""
        raise InstallError(f"{exc}{kept}") from exc
    old = app / "env.old"
    shutil.rmtree(old, ignore_errors=True)
    if env.exists():
        try:
            env.rename(old)
        except OSError as exc:
            shutil.rmtree(new_env, ignore_errors=True)
            raise InstallError(f"{env} is in use ({exc}): close distill-gui and run the installer again") from exc
    new_env.rename(env)
    shutil.rmtree(old, ignore_errors=True)

    installer_copy = app / "installer"
    if payload.resolve() != installer_copy.resolve():
        shutil.rmtree(installer_copy, ignore_errors=True)
        shutil.copytree(payload, installer_copy)
    created = [] if args.no_shortcuts else make_shortcuts(app, installer_copy, log)
    record = {"version": wheel.name.split("-")[1], "torch_build": build if args.torch else recorded.get("torch_build", "auto"),
              "torch_spec": args.torch_spec or recorded.get("torch_spec"), "find_links": [str(f) for f in find_links],
              "installed": time.strftime("%Y-%m-%d %H:%M:%S"), "created": created + recorded.get("created", [])}
    record["created"] = sorted(set(record["created"]))
    (app / "install.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    log.say(f"distill-gui is installed: start it from the applications menu or run {env_program(env) if args.no_shortcuts else launcher_path()}")
    return 0


def read_record(app: Path) -> dict:
    try:
        return json.loads((app / "install.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


# ---- Shortcuts (Linux; the Windows and macOS installers make their own) ---------------------------


def launcher_path() -> Path:
    return Path.home() / ".local" / "bin" / APP


def make_shortcuts(app: Path, payload: Path, log: Log) -> list[str]:
    """A ``distill-gui`` command in ``~/.local/bin``, the icon and a desktop entry; returns what it made."""
    if SYSTEM != "Linux":
        return []
    share = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    launcher = launcher_path()
    icon = share / "icons" / "hicolor" / "256x256" / "apps" / f"{APP}.png"
    desktop = share / "applications" / f"{APP}.desktop"
    for path in (launcher, icon, desktop):
        path.parent.mkdir(parents=True, exist_ok=True)
    launcher.write_text(f'#!/bin/sh\nexec "{env_program(app / "env")}" "$@"\n', encoding="utf-8")
    launcher.chmod(0o755)
    shutil.copyfile(payload / f"{APP}.png", icon)
    desktop.write_text(
        "[Desktop Entry]\nType=Application\nName=distill-gui\nGenericName=Knowledge distillation\n"
        "Comment=Distil a large language model into a small one\n"
        f"Exec={launcher} app %F\nIcon={APP}\nTerminal=false\nCategories=Development;Science;\n"
        "StartupWMClass=distill-gui\n", encoding="utf-8")
    log.say(f"Made {launcher}, {desktop} and the icon")
    if str(launcher.parent) not in os.environ.get("PATH", "").split(os.pathsep):
        log.say(f"Note: {launcher.parent} is not on your PATH; the menu entry works, or run {launcher}")
    return [str(launcher), str(icon), str(desktop)]


# ---- Uninstall -------------------------------------------------------------------------------------


def uninstall(args, app: Path, log: Log | None) -> int:
    record = read_record(app)
    removed = []
    for path in map(Path, record.get("created", [])):
        if path.is_file():
            path.unlink()
            removed.append(str(path))
            _remove_empty_parents(path.parent)
    if app.exists():
        shutil.rmtree(app)
        removed.append(str(app))
    if args.purge:
        for folder in (data_dir(), config_dir() if SYSTEM == "Linux" else None):
            if folder and folder.exists():
                shutil.rmtree(folder)
                removed.append(str(folder))
        if SYSTEM == "Darwin":
            plist = Path.home() / "Library" / "Preferences" / "com.distill-gui.distill-gui.plist"
            if plist.exists():
                plist.unlink()
                removed.append(str(plist))
        if SYSTEM == "Windows":
            removed += _delete_registry_settings()
    print("Removed: " + (", ".join(removed) if removed else "nothing (distill-gui was not installed)"))
    if not args.purge and data_dir().exists():
        print(f"Kept your runs, models and settings in {data_dir()} (use --purge to remove them too)")
    return 0


def _remove_empty_parents(folder: Path) -> None:
    """Folders the shortcuts needed (``~/.local/bin``, ``.../icons/hicolor/256x256/apps``) go when left empty."""
    home = Path.home().resolve()
    while folder.resolve() != home and home in folder.resolve().parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def _delete_registry_settings() -> list[str]:
    """The app's QSettings on Windows: HKEY_CURRENT_USER\\Software\\distill-gui."""
    import winreg  # noqa: PLC0415 - Windows only

    def delete(root, path: str) -> None:
        with winreg.OpenKey(root, path, 0, winreg.KEY_ALL_ACCESS) as key:
            while True:
                try:
                    child = winreg.EnumKey(key, 0)
                except OSError:
                    break
                delete(root, f"{path}\\{child}")
        winreg.DeleteKey(root, path)

    try:
        delete(winreg.HKEY_CURRENT_USER, f"Software\\{APP}")
    except OSError:
        return []
    return [f"HKCU\\Software\\{APP}"]


# ---- Main ------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="distill-gui-setup", description="Install, repair or uninstall distill-gui for this user.")
    p.add_argument("--torch", choices=torch_builds.CHOICES, help="the torch build (default: detected from the GPU driver)")
    p.add_argument("--torch-spec", help="the torch requirement, e.g. 'torch==2.13.0' (default: the version this release was locked with)")
    p.add_argument("--offline", type=Path, metavar="WHEELHOUSE", help="install only from this folder of wheels, with no network at all")
    p.add_argument("--find-links", type=Path, action="append", metavar="DIR", help="also look for wheels in DIR (repeatable)")
    p.add_argument("--repair", action="store_true", help="rebuild the environment with the choices recorded at install")
    p.add_argument("--uninstall", action="store_true", help="remove the app and its environment (keeps runs, models, settings)")
    p.add_argument("--purge", action="store_true", help="with --uninstall: also remove runs, models and settings")
    p.add_argument("--no-shortcuts", action="store_true", help="make no launcher or desktop entry")
    p.add_argument("--payload", type=Path, default=HERE, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.purge and not args.uninstall:
        p.error("--purge goes with --uninstall")
    if args.offline and not args.offline.is_dir():
        p.error(f"--offline {args.offline}: not a folder of wheels")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    app = data_dir() / "app"
    if args.uninstall:
        return uninstall(args, app, None)
    log = Log(app / "logs" / f"install-{time.strftime('%Y%m%d-%H%M%S')}.log")
    log.say(f"distill-gui installer: the app goes to {app} (log: {log.path})")
    try:
        return install(args, args.payload.resolve(), app, log)
    except InstallError as exc:
        log.say(f"\nThe install failed: {exc}")
        log.say(f"What to do: read the log ({log.path}); check the network (or use --offline WHEELHOUSE); "
                "choose another torch build with --torch cpu|cu126|cu128; then run the installer again.")
        return 1
    except KeyboardInterrupt:
        shutil.rmtree(app / "env.new", ignore_errors=True)
        log.say("Interrupted; nothing was changed.")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
