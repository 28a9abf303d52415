"""Face descriptors: tagd's converted dlib network against dlib-bin itself.

Usage: python bench/face_embedding.py --models-dir DIR [--threads 2] [--runs 7]

On every face dlib's frontal detector finds in ../shared/eval/faces (with the
5-point shape predictor from the face-recognition-models archive), compares
dlib's `compute_face_descriptor(image, shape)` with each installed
face-embedding variant in DIR run on tagd's numpy chip from the same 5 points:
min cosine, max |diff|, pair verification accuracy on identities.json (same
person when the distance is below 0.6). Then time per face, medians over runs
that alternate between engines, all in this process: dlib (chip + network,
as users call it; and network only on a chip) and each variant (numpy chip +
network) at batch 1 and 8. dlib-bin's CPU network runs on the threads its
BLAS gives it; onnxruntime gets --threads.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tagd.media.facechip import face_chip_dlib5
from tagd.runtime.face_embedding import TASK, FaceEmbedder
from tagd.runtime.manifest import load_manifest

SHARED = Path(__file__).resolve().parents[2] / "shared"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, required=True)
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/tagd-cache-dlib"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args(argv)
    try:
        import dlib
    except ImportError:
        print("dlib-bin is not installed: nothing to compare with", file=sys.stderr)
        return 1
    if not (SHARED / "eval" / "faces").is_dir():
        print(f"{SHARED / 'eval' / 'faces'} is absent", file=sys.stderr)
        return 1
    from tagd_export.context import ExportContext
    from tagd_export.families import dlib_face

    ctx = ExportContext(
        models_dir=args.models_dir,
        cache_dir=args.cache_dir,
        sources=[SHARED / "models"],
        eval_dir=SHARED / "eval",
    )
    net = dlib_face._dlib_net(dlib, dlib_face.model_bytes(ctx))
    photos = ctx.eval_images("faces/images", 1000)
    faces = list(dlib_face.dlib_faces(ctx, dlib, photos))
    names = [name for name, _, _ in faces]
    points = [np.array([[s.part(i).x, s.part(i).y] for i in range(5)], float) for _, _, s in faces]
    chips = np.stack(
        [face_chip_dlib5(rgb, p) for (_, rgb, _), p in zip(faces, points, strict=True)]
    )
    ref = np.stack([np.array(net.compute_face_descriptor(rgb, s)) for _, rgb, s in faces])
    who = dlib_face.identities(SHARED / "eval")
    print(f"{len(faces)} faces in {len(photos)} photos")
    acc = dlib_face.verification_accuracy(names, ref, who)
    print(f"dlib: verification accuracy {acc:.4f}")

    specs = [s for s in load_manifest(args.models_dir).values() if s.task == TASK]
    embedders = {
        s.name: FaceEmbedder(s, args.models_dir, threads=args.threads, batch_size=8) for s in specs
    }
    for name, emb in embedders.items():
        ours = emb.embed(chips)
        cos = np.sum(ref * ours, 1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(ours, axis=1))
        acc = dlib_face.verification_accuracy(names, ours, who)
        print(
            f"{name}: min cosine {cos.min():.7f}, max |diff| {np.abs(ref - ours).max():.2e}, "
            f"verification accuracy {acc:.4f}"
        )

    rgb0, shape0, chip0 = faces[0][1], faces[0][2], chips[0]
    cases: dict[str, Callable[[], object]] = {
        "dlib compute_face_descriptor(image, shape), b1": lambda: net.compute_face_descriptor(
            rgb0, shape0
        ),
        "dlib network on a chip, b1": lambda: net.compute_face_descriptor(chip0),
        "dlib network on chips, b8": lambda: net.compute_face_descriptor(list(chips[:8])),
    }
    for name, emb in embedders.items():
        cases[f"{name}: chip + network, b1"] = lambda e=emb: e.embed(
            [face_chip_dlib5(rgb0, points[0])]
        )
        cases[f"{name}: network, b1"] = lambda e=emb: e.embed(chips[:1])
        cases[f"{name}: network, b8"] = lambda e=emb: e.embed(chips[:8])
    per_face = {key: 8 if "b8" in key else 1 for key in cases}
    times: dict[str, list[float]] = {key: [] for key in cases}
    for fn in cases.values():
        fn()  # warm up: sessions load lazily
    for _ in range(args.runs):
        for key, fn in cases.items():
            start = time.perf_counter()
            fn()
            times[key].append((time.perf_counter() - start) * 1000 / per_face[key])
    base = statistics.median(times["dlib compute_face_descriptor(image, shape), b1"])
    print(f"\n{'case':<58} {'ms/face':>8} {'vs dlib':>8}")
    for key in cases:
        ms = statistics.median(times[key])
        print(f"{key:<58} {ms:8.2f} {base / ms:7.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
