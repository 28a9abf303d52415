"""`tagd doctor`: everything about this machine and this install that a bug
report needs, in one paste. Never changes anything; runs even when the config
file is broken (and says so)."""

from __future__ import annotations

import argparse
import glob
import os
import platform
import shutil
import stat
import subprocess
from pathlib import Path

from tagd import __version__
from tagd.cli.context import EXIT_FAILURES, EXIT_OK, Context
from tagd.config import ConfigError, Settings, find_config_file, load_settings, profile_keys

# CPU features that decide how fast the models run.
INTERESTING_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16",
    "avx_vnni", "amx_tile", "amx_bf16", "amx_int8", "asimd", "asimddp", "sve",
)  # fmt: skip
PCI_VENDORS = {"0x8086": "Intel", "0x1002": "AMD", "0x10de": "NVIDIA"}


def register(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser(
        "doctor", help="CPU, GPU, engines, models, catalog and config: paste into a bug report"
    )
    p.set_defaults(handler=doctor)


class Report:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def line(self, text: str) -> None:
        print(text)

    def problem(self, text: str) -> None:
        self.problems.append(text)
        print(f"  PROBLEM: {text}")


def doctor(ctx: Context, args: argparse.Namespace) -> int:
    r = Report()
    r.line(f"tagd {__version__}, Python {platform.python_version()}, {platform.platform()}")
    settings = _config(ctx, r)
    _cpu(r)
    _gpu(r)
    _engines(settings, r)
    _models(settings, r)
    _endpoints(settings, r)
    _catalog(settings, r)
    _stash(settings, r)
    if r.problems:
        r.line(f"{len(r.problems)} problem(s):")
        for p in r.problems:
            r.line(f"  - {p}")
        return EXIT_FAILURES
    r.line("no problems found")
    return EXIT_OK


def _config(ctx: Context, r: Report) -> Settings:
    path = find_config_file(ctx.config_path)
    try:
        settings = load_settings(ctx.config_path)
    except ConfigError as exc:
        r.line(f"config: {path}: INVALID (the rest uses the built-in defaults)")
        r.problem(str(exc))
        return Settings()
    r.line(f"config: {settings.source or 'built-in defaults (no config file)'}: OK")
    values = []
    for key in profile_keys():
        section, name = key.split(".")
        values.append(f"{key}={getattr(getattr(settings, section), name)!r}")
    r.line(f"  profile {settings.profile}: " + ", ".join(values))
    d = settings.daemon
    r.line(
        f"  library.roots={settings.library.roots!r}, schedule={d.schedule!r}, "
        f"watch={d.watch}, xmp={settings.xmp.enabled}, log_level={d.log_level}"
    )
    return settings


def _cpu(r: Report) -> None:
    info = _cpuinfo()
    model = (
        info.get("model name") or info.get("Model") or info.get("Hardware") or platform.processor()
    )
    flags = set((info.get("flags") or info.get("Features") or "").split())
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        usable = os.cpu_count() or 0
    r.line(f"cpu: {model or 'unknown'}; {usable} usable of {os.cpu_count()} logical cores")
    have = [f for f in INTERESTING_FLAGS if f in flags]
    r.line(f"  flags: {' '.join(have) or 'none of ' + ' '.join(INTERESTING_FLAGS)}")
    try:
        import psutil

        mem = psutil.virtual_memory()
        r.line(
            f"memory: {mem.total / 2**30:.1f} GiB total, {mem.available / 2**30:.1f} GiB available"
        )
    except Exception as exc:  # pragma: no cover - psutil missing or odd platform
        r.line(f"memory: unknown ({exc})")


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return info
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in info:
            info[key.strip()] = value.strip()
    return info


def _gpu(r: Report) -> None:
    found = []
    for node in sorted(glob.glob("/sys/class/drm/renderD*")):
        try:
            vendor = Path(node, "device", "vendor").read_text().strip()
        except OSError:
            vendor = "?"
        found.append(f"/dev/dri/{os.path.basename(node)} ({PCI_VENDORS.get(vendor, vendor)})")
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10).stdout
            found += [line.strip() for line in out.splitlines() if line.strip()]
        except (OSError, subprocess.SubprocessError) as exc:
            found.append(f"nvidia-smi failed: {exc}")
    r.line(
        "gpu: "
        + ("; ".join(found) if found else "none found (no /dev/dri render node, no nvidia-smi)")
    )


def _engines(settings: Settings, r: Report) -> None:
    try:
        import onnxruntime as ort

        from tagd.runtime.backends import resolve_backend

        providers = ort.get_available_providers()
        r.line(
            f"onnxruntime {ort.__version__}: providers {', '.join(providers)}; "
            f"runtime.backend {settings.runtime.backend!r} -> "
            f"{resolve_backend(settings.runtime.backend)}"
        )
        if settings.runtime.backend == "cuda" and "CUDAExecutionProvider" not in providers:
            r.problem("runtime.backend = 'cuda' but onnxruntime has no CUDA provider")
    except Exception as exc:
        r.problem(f"onnxruntime cannot be imported: {exc}")
    try:
        import openvino as ov

        core = ov.Core()
        devices = []
        for device in core.available_devices:
            try:
                name = core.get_property(device, "FULL_DEVICE_NAME")
            except Exception:
                name = "?"
            devices.append(f"{device} ({name})")
        r.line(f"openvino {ov.__version__}: devices {', '.join(devices) or 'none'}")
    except ImportError:
        line = "openvino: not installed"
        if settings.runtime.backend == "openvino":
            r.problem(line + " but runtime.backend = 'openvino'")
        else:
            r.line(line)
    except Exception as exc:
        r.problem(f"openvino does not work: {exc}")


def _models(settings: Settings, r: Report) -> None:
    from tagd.paths import models_dir
    from tagd.runtime.manifest import ModelError, load_manifest, verified_path

    folder = models_dir(settings)
    try:
        specs = load_manifest(folder)
    except ModelError as exc:
        r.problem(str(exc))
        return
    used: set[str] = set()
    off: dict[str, str] = {}
    try:
        from tagd.pipeline import usable_analyzers

        analyzers, off = usable_analyzers(settings, folder)
        used = {m.spec.name for a in analyzers for m in a.models}
    except ModelError as exc:
        r.problem(str(exc))
    for name, why in off.items():
        r.line(f"analyzer {name}: {why}")
    r.line(f"models ({folder}):")
    for name, spec in sorted(specs.items()):
        role = "used" if name in used else "not used"
        try:
            path = verified_path(spec, folder)
            state = f"present, sha256 verified ({path.stat().st_size / 2**20:.1f} MB)"
        except ModelError as exc:
            state = "missing" if "missing" in str(exc) else "DAMAGED"
            if name in used:
                r.problem(str(exc))
        r.line(f"  {name} ({spec.task}, {role}): {spec.file}: {state}")


def _catalog(settings: Settings, r: Report) -> None:
    from tagd.catalog.connect import DRIVER
    from tagd.catalog.health import health
    from tagd.catalog.migrations import SCHEMA_VERSION
    from tagd.paths import state_dir
    from tagd.service.lock import holder

    folder = state_dir(settings)
    writable = (
        os.access(folder, os.W_OK)
        if folder.exists()
        else os.access(_existing_parent(folder), os.W_OK)
    )
    r.line(f"state dir: {folder} ({'writable' if writable else 'NOT writable'})")
    if not writable:
        r.problem(f"state dir {folder} is not writable by this user")
    held = holder(folder)
    r.line(f"  daemon: {f'{held[1]} running, pid {held[0]}' if held else 'not running'}")
    if held and "run" in held[1]:
        _control_socket(folder, r)
    path = folder / "catalog.db"
    if not path.exists():
        r.line(f"catalog: {path}: not created yet (the first scan creates it)")
        return
    try:
        con = DRIVER.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    except DRIVER.Error as exc:
        r.problem(f"catalog {path} cannot be opened: {exc}")
        return
    try:
        state = health(con)
    except DRIVER.Error as exc:
        r.problem(f"catalog {path} cannot be read: {exc}")
        return
    finally:
        con.close()
    size = sum(p.stat().st_size for p in folder.glob("catalog.db*") if p.is_file())
    r.line(
        f"catalog: {path}: {size / 2**20:.1f} MB, schema {state.schema} "
        f"(this tagd: {SCHEMA_VERSION}), journal {state.journal}, "
        f"quick_check {state.quick_check}; {state.files} files, {state.errors} in error, "
        f"{state.queued} queued writes"
    )
    if state.quick_check != "ok":
        r.problem(f"catalog {path} is damaged: {state.quick_check}")
    if state.schema > SCHEMA_VERSION:
        r.problem(f"catalog schema {state.schema} is newer than this tagd; upgrade tagd")


def _control_socket(folder: Path, r: Report) -> None:
    from tagd.service.control import ControlError, ask
    from tagd.service.lock import holder_notes

    path = holder_notes(folder).get("socket")
    if not path:
        r.line('  control socket: off (daemon.control_socket = "")')
        return
    try:
        answer = ask(Path(path), "status", timeout=5.0)
    except ControlError as exc:
        r.problem(f"the daemon's control socket does not answer: {exc}")
        return
    mode = stat.S_IMODE(os.stat(path).st_mode)
    r.line(f"  control socket: {path} (mode {mode:o}): answers, {answer.get('message')}")


def _endpoints(settings: Settings, r: Report) -> None:
    """Each inference server: up, and serving the models (at the installed files'
    versions) that the analyzers send it."""
    runtime = settings.runtime
    if not runtime.endpoints:
        return
    from tagd.paths import models_dir
    from tagd.pipeline import build_analyzers
    from tagd.runtime.kserve import EndpointDown, KServeClient, ModelMissing, model_version
    from tagd.runtime.model import HoldsModel, ManagedModel

    try:
        analyzers = build_analyzers(settings, models_dir(settings))
    except Exception as exc:  # reported by the models check above
        r.line(f"inference servers: not checked ({exc})")
        return
    wanted = set()
    for analyzer in analyzers:
        for model in analyzer.models:
            managed = model.model if isinstance(model, HoldsModel) else model
            if isinstance(managed, ManagedModel) and managed.remote is not None:
                wanted.add((managed.spec.name, model_version(managed.spec.sha256)))
    for endpoint in runtime.endpoints:
        client = KServeClient(endpoint.url, min(runtime.remote_timeout, 10.0))
        try:
            for name, version in sorted(wanted):
                client.ready(name, version)
        except (EndpointDown, ModelMissing) as exc:
            r.problem(f"inference server {exc}")
        else:
            role = " (fallback)" if endpoint.fallback else ""
            r.line(f"inference server {endpoint.url}{role}: ready, {len(wanted)} models")
        finally:
            client.close()


def _stash(settings: Settings, r: Report) -> None:
    """Reachable, which version, the API key accepted, and the library mapped."""
    if not settings.stash.enabled:
        r.line("stash: off")
        return
    from tagd.sinks.stash.client import StashError
    from tagd.sinks.stash.deliver import make_client
    from tagd.sinks.stash.lookup import markers_problem, stash_path

    s = settings.stash
    try:
        version = make_client(settings).call("{ version { version } }")["version"]["version"]
    except StashError as exc:
        r.problem(f"stash: {s.url}: {exc}")
        return
    except (KeyError, TypeError):
        r.problem(f"stash: {s.url} answered, but not like Stash (no version)")
        return
    r.line(f"stash: {s.url}: Stash {version}, API key accepted")
    problem = markers_problem(str(version or "")) if s.markers else None
    if problem is not None:
        r.problem(f"stash: {problem}")
    for root in settings.library.roots:
        mapped = stash_path(os.path.abspath(root), s.path_mappings)
        r.line(f"  library root {root} is {mapped} in Stash")


def _existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
