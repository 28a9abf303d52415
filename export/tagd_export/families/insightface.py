"""InsightFace models the user supplies: ArcFace embedders and SCRFD detectors (ONNX).

No ArcFace or SCRFD weights reach these machines (they come from InsightFace's
own downloads, under a non-commercial licence), so this family only checks and
installs files the user gives with `tagd models export insightface --from
PATH`. What the file is follows from its interface:

- ArcFace (e.g. w600k_r50.onnx, w600k_mbf.onnx): one input N x 3 x 112 x 112,
  one output N x 512 (or 128/256) -> task "face-embedding". InsightFace feeds
  RGB (x - 127.5) / 127.5 chips aligned on its 5-point template; unlike dlib's,
  its descriptors are compared by cosine similarity.
- SCRFD (e.g. det_10g.onnx, det_2.5g.onnx): one image input and 6 outputs
  (scores and boxes for strides 8/16/32) or 9 (plus 5 landmarks) -> task
  "face-detection".

The file is copied as it is (a dynamic batch when the file has one), recorded
with its sha256, and never the default of its task: dlib-face and retinaface
stay the defaults unless the user picks these in the config.
"""

from __future__ import annotations

from pathlib import Path

from tagd.runtime.manifest import ModelSpec
from tagd_export.context import ExportContext, ExportError
from tagd_export.files import install_file

NAME = "insightface"
TASK = "face-embedding"
DEFAULT = False
DESCRIPTION = "user-supplied InsightFace ArcFace (face-embedding) or SCRFD (face-detection) ONNX"

ARCFACE_PREPROCESSING = (
    "112x112 RGB chip aligned on InsightFace's 5-point template, NCHW float32, "
    "(x - 127.5) / 127.5; compare descriptors by cosine"
)
SCRFD_PREPROCESSING = "RGB, (x - 127.5) / 128, NCHW float32; strides 8/16/32, 2 anchors"
LICENSE = "InsightFace model licence (non-commercial research use); supplied by the user"
EMBED_DIMS = (128, 256, 512)


def fetch(ctx: ExportContext) -> list[ModelSpec]:
    raise ExportError(
        "InsightFace weights cannot be downloaded here (no model hub, and their licence "
        "is non-commercial). Get w600k_r50.onnx (ArcFace) or det_10g.onnx (SCRFD) from "
        "the insightface model zoo yourself and run `tagd models export insightface "
        "--from PATH`"
    )


def export(ctx: ExportContext, source: str | None, quantize: str, fmt: str) -> list[ModelSpec]:
    if source is None:
        return fetch(ctx)
    path = Path(source)
    if not path.is_file() or path.suffix.lower() != ".onnx":
        raise ExportError(f"--from {source}: give the path of an ArcFace or SCRFD .onnx file")
    if quantize != "none" or fmt != "onnx":
        raise ExportError("insightface files are installed as given: use --quantize none "
                          "--format onnx")  # fmt: skip
    return [describe(ctx, path)]


def _dims(value: object) -> list[int | str]:
    dims = value.type.tensor_type.shape.dim  # type: ignore[attr-defined]
    return [d.dim_param or (d.dim_value if d.HasField("dim_value") else "?") for d in dims]


def describe(ctx: ExportContext, path: Path) -> ModelSpec:
    """Check the file's interface and install it with a manifest entry."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises its own DecodeError
        raise ExportError(f"{path}: not an ONNX file ({exc})") from None
    init = {i.name for i in model.graph.initializer}
    inputs = [_dims(v) for v in model.graph.input if v.name not in init]
    outputs = [_dims(v) for v in model.graph.output]
    if len(inputs) != 1 or len(inputs[0]) != 4 or inputs[0][1] != 3:
        raise ExportError(f"{path.name}: expected one N x 3 x H x W input, found {inputs}")
    stem = path.stem.lower().replace("_", "-")
    if len(outputs) == 1:
        return _arcface(ctx, path, inputs[0], outputs[0], stem)
    if len(outputs) in (6, 9):
        return _scrfd(ctx, path, inputs[0], len(outputs), stem)
    raise ExportError(f"{path.name}: {len(outputs)} outputs; ArcFace has 1 (N x 512), SCRFD 6 or 9")


Dims = list[int | str]


def _arcface(ctx: ExportContext, path: Path, shape: Dims, out: Dims, stem: str) -> ModelSpec:
    if shape[2:] != [112, 112]:
        raise ExportError(f"{path.name}: ArcFace takes 112 x 112 chips, this takes {shape[2:]}")
    if len(out) != 2 or out[1] not in EMBED_DIMS:
        raise ExportError(f"{path.name}: expected an N x 512 embedding output, found {out}")
    dest = ctx.models_dir / f"insightface_{path.stem}.onnx"
    sha = install_file(path, dest)
    ctx.log(f"{path.name}: ArcFace-style embedder, {out[1]}-d, batch {shape[0]}")
    return ModelSpec(
        name=f"arcface-{stem}",
        task="face-embedding",
        family=NAME,
        variant="fp32",
        default=False,
        file=dest.name,
        sha256=sha,
        input=(112, 112),
        preprocessing=ARCFACE_PREPROCESSING,
        license=LICENSE,
        source=f"user-supplied {path.name}",
        metrics={"embedding_dim": float(out[1])},
    )


def _scrfd(ctx: ExportContext, path: Path, shape: Dims, n_out: int, stem: str) -> ModelSpec:
    size = [d if isinstance(d, int) and d > 0 else 640 for d in shape[2:]]
    dest = ctx.models_dir / f"insightface_{path.stem}.onnx"
    sha = install_file(path, dest)
    ctx.log(f"{path.name}: SCRFD-style detector, {n_out} outputs, input {shape}")
    return ModelSpec(
        name=f"scrfd-{stem}",
        task="face-detection",
        family=NAME,
        variant="fp32",
        default=False,
        file=dest.name,
        sha256=sha,
        input=(int(size[1]), int(size[0])),
        preprocessing=SCRFD_PREPROCESSING + ("; with 5 landmarks" if n_out == 9 else ""),
        license=LICENSE,
        source=f"user-supplied {path.name}",
    )
