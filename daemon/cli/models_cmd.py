"""`tagd models list | verify | fetch`: the model files tagd runs."""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from tagd.cli.context import EXIT_FAILURES, EXIT_OK, Context, UsageError
from tagd.paths import REPO_MODELS_DIR
from tagd.runtime.manifest import ModelError, ModelSpec, load_manifest, sha256_of, verified_path

# A checkout next to a shared folder of weights (how offline machines get them).
DEFAULT_SOURCES = [REPO_MODELS_DIR.parent.parent / "shared" / "models"]


def register(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("models", help="list, verify and fetch model files")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    sub.add_parser(
        "list", help="models in the manifest and whether they are installed"
    ).set_defaults(handler=list_cmd)
    sub.add_parser("verify", help="check every installed model's sha256").set_defaults(
        handler=verify_cmd
    )
    fetch = sub.add_parser("fetch", help="install the models from a local folder")
    fetch.add_argument(
        "--source",
        metavar="DIR",
        help="folder holding the weights (default: $TAGD_MODELS_SOURCE or ../shared/models)",
    )
    fetch.set_defaults(handler=fetch_cmd)


def _state(spec: ModelSpec, models_dir: Path) -> str:
    try:
        verified_path(spec, models_dir)
        return "ok"
    except ModelError as exc:
        return "missing" if "missing" in str(exc) else "damaged"


def list_cmd(ctx: Context, args: argparse.Namespace) -> int:
    specs = load_manifest(ctx.models_dir)
    print(f"models in {ctx.models_dir}:")
    for spec in specs.values():
        w, h = spec.input
        print(
            f"  {spec.name:<14} {spec.task:<10} {spec.file:<22} {w}x{h}  "
            f"{_state(spec, ctx.models_dir):<8} {spec.license}"
        )
    return EXIT_OK


def verify_cmd(ctx: Context, args: argparse.Namespace) -> int:
    bad = 0
    for spec in load_manifest(ctx.models_dir).values():
        try:
            path = verified_path(spec, ctx.models_dir)
            print(f"ok       {spec.name}: {path}")
        except ModelError as exc:
            bad += 1
            print(f"FAILED   {exc}")
    return EXIT_FAILURES if bad else EXIT_OK


def _sources(explicit: str | None) -> list[Path]:
    if explicit:
        return [Path(explicit)]
    env = os.environ.get("TAGD_MODELS_SOURCE")
    return [Path(env)] if env else DEFAULT_SOURCES


def fetch_cmd(ctx: Context, args: argparse.Namespace) -> int:
    sources = [s for s in _sources(args.source) if s.is_dir()]
    if args.source and not sources:
        raise UsageError(f"--source {args.source}: not a folder")
    missing = 0
    for spec in load_manifest(ctx.models_dir).values():
        if _state(spec, ctx.models_dir) == "ok":
            print(f"ok       {spec.name} (already installed)")
            continue
        if _install(spec, sources, ctx.models_dir):
            print(f"fetched  {spec.name} -> {ctx.models_dir / spec.file}")
        else:
            missing += 1
            wanted = ", ".join(spec.fetch) or spec.file
            print(
                f"MISSING  {spec.name}: put {wanted} under a folder and run "
                f"`tagd models fetch --source FOLDER`; source: {spec.source}"
            )
    return EXIT_FAILURES if missing else EXIT_OK


def _install(spec: ModelSpec, sources: list[Path], models_dir: Path) -> bool:
    for source in sources:
        for rel in spec.fetch or (spec.file,):
            candidate = source / rel
            if candidate.is_file() and sha256_of(candidate) == spec.sha256:
                _copy_atomic(candidate, models_dir / spec.file)
                return True
    return False


def _copy_atomic(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.")
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
            shutil.copyfileobj(inp, out)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
