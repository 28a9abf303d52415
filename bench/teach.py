"""Taught tags: precision and recall on labelled photos not used to teach, and
the time to apply a taught tag to 100,000 stored embeddings.

The library is the dev photos of ../shared/eval: ImageNet-dev (100 photos, one
class each, grouped into concepts by tagd's concept taxonomy) and COCO-128
(object labels: a photo shows a person, a car, ...). Both are scanned with the
concepts analyzer only, which stores each photo's general image embedding. For
each concept and k in 5, 10, 20 (where the concept has k + 3 photos or more),
--trials times: k of its photos, drawn at random, are the examples; the tag is
taught through tagd.teach against the whole library; precision and recall are
counted on the photos of the same set that were not examples. Then a catalog
of --files synthetic embeddings times applying a taught tag to all of them
(target <= 2 s for 100,000). CLIP embeddings are compared when a CLIP model is
installed (`tagd models export clip`).

    .venv/bin/python bench/teach.py [--trials 5] [--files 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tagd.catalog.catalog import Catalog
from tagd.config import Settings
from tagd.embedding import EMBEDDING
from tagd.paths import models_dir
from tagd.policy.concepts import _concepts, class_keys, imagenet_classes
from tagd.records import Detection
from tagd.runtime.manifest import default_for, load_manifest
from tagd.teach import apply_all, full_tag, teach

EVAL = Path(__file__).resolve().parents[2] / "shared" / "eval"
IMAGENET = EVAL / "classes-imagenet-dev"
COCO = EVAL / "objects-coco128-train"
IMAGENET_CONCEPTS = ("animal", "dog", "bird", "vehicle")
COCO_CONCEPTS = ("person", "car", "dining table", "cup", "dog", "chair")
SIZES = (5, 10, 20)
HELD_MIN = 3  # photos of the concept left to find, at least
CONFIG = "".join(
    f"[{s}]\nenabled = false\n" for s in ("xmp", "objects", "ocr", "faces", "duplicates", "clip")
)
NAME = "bench concept"


def imagenet_truth() -> dict[str, set[str]]:
    """concept -> file names of ImageNet-dev photos whose class it includes."""
    labels = json.loads((IMAGENET / "labels.json").read_text())["labels"]
    keys = class_keys(imagenet_classes())
    concepts, _ = _concepts(Settings().tags.concepts)
    out: dict[str, set[str]] = {c: set() for c in IMAGENET_CONCEPTS}
    for name, label in labels.items():
        key = keys[label["class_index"]]
        for concept in IMAGENET_CONCEPTS:
            if key in concepts[concept].keys:
                out[concept].add(name)
    return out


def coco_truth() -> dict[str, set[str]]:
    """object label -> file names of COCO-128 photos showing one."""
    names = (COCO / "classes.txt").read_text().split("\n")
    out: dict[str, set[str]] = {c: set() for c in COCO_CONCEPTS}
    for labels in (COCO / "labels").glob("*.txt"):
        shown = {names[int(line.split()[0])] for line in labels.read_text().splitlines() if line}
        for concept in COCO_CONCEPTS:
            if concept in shown:
                out[concept].add(labels.stem + ".jpg")
    return out


def scan(state: Path, library: Path, text: str = CONFIG, clip: bool = False) -> None:
    config = state / ("config-clip.toml" if clip else "config.toml")
    config.write_text(text)
    env = dict(os.environ, TAGD_STATE_DIR=str(state), TAGD_MODELS_DIR=str(models_dir(Settings())))
    subprocess.run(
        [sys.executable, "-m", "tagd", "--config", str(config), "scan", str(library)],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )


def contents_by_name(catalog: Catalog, folder: Path) -> dict[str, int]:
    rows = catalog.con.execute("SELECT path, content_id FROM files WHERE content_id IS NOT NULL")
    return {Path(p).name: cid for p, cid in rows if Path(p).parent == folder}


def accuracy(catalog: Catalog, settings: Settings, trials: int, sets: dict) -> list[tuple]:
    rng = random.Random(0)
    tag = full_tag(settings, NAME)
    rows = []
    for source, (truth, ids) in sets.items():
        photos = set(ids.values())
        for concept, names in truth.items():
            positives = sorted(ids[n] for n in names if n in ids)
            for k in SIZES:
                if len(positives) < k + HELD_MIN:
                    continue
                precision, recall = [], []
                for _ in range(trials):
                    examples = rng.sample(positives, k)
                    teach(catalog, settings, NAME, examples)
                    tagged = {
                        cid
                        for (cid,) in catalog.con.execute(
                            "SELECT content_id FROM tags WHERE name = ?", (tag,)
                        )
                    }
                    judged = photos - set(examples)
                    found = tagged & judged
                    relevant = set(positives) & judged
                    hits = len(found & relevant)
                    precision.append(hits / len(found) if found else 1.0)
                    recall.append(hits / len(relevant))
                rows.append(
                    (
                        concept,
                        source,
                        len(positives),
                        k,
                        statistics.mean(precision),
                        statistics.mean(recall),
                    )
                )
    return rows


def print_rows(rows: list[tuple]) -> None:
    print("| concept | set | photos | examples | precision | recall |")
    print("| --- | --- | --- | --- | --- | --- |")
    for concept, source, n, k, p, r in rows:
        print(f"| {concept} | {source} | {n} | {k} | {p:.2f} | {r:.2f} |")
    for k in SIZES:
        picked = [(p, r) for *_, kk, p, r in rows if kk == k]
        if picked:
            p = statistics.mean(x for x, _ in picked)
            r = statistics.mean(y for _, y in picked)
            print(f"| mean of {len(picked)} concepts | | | {k} | {p:.2f} | {r:.2f} |")


def clip_installed() -> bool:
    return default_for(load_manifest(models_dir(Settings())), "clip") is not None


def apply_time(work: Path, files: int, runs: int = 3) -> tuple[float, float]:
    """(median seconds to apply one taught tag to `files` stored embeddings, the
    catalog's size in MB)."""
    rng = np.random.default_rng(0)
    path = work / "big.db"
    catalog = Catalog(path)
    try:
        with catalog.transaction():
            for n in range(files):
                cid = catalog.ensure_content(f"fp{n}", "image")
                vector = rng.integers(0, 40, 1280).astype(np.int8)
                catalog.save_analysis(
                    cid, "concepts", "bench", [Detection(EMBEDDING, 1.0, None, vector=vector)]
                )
        settings = Settings()
        with catalog.transaction():
            catalog.save_taught(NAME, list(range(1, 11)), [])
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            apply_all(catalog, settings)
            times.append(time.perf_counter() - start)
        return statistics.median(times), path.stat().st_size / 1e6
    finally:
        catalog.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--files", type=int, default=100_000)
    args = parser.parse_args()
    if not (IMAGENET.is_dir() and COCO.is_dir()):
        print(f"skipped: {EVAL} lacks the dev sets")
        return 0
    work = Path(tempfile.mkdtemp(prefix="tagd-bench-teach-"))
    try:
        library = work / "library"
        (library / "imagenet").mkdir(parents=True)
        (library / "coco").mkdir()
        for src in (IMAGENET / "images").iterdir():
            shutil.copyfile(src, library / "imagenet" / src.name)
        for src in (COCO / "images").glob("*.jpg"):
            shutil.copyfile(src, library / "coco" / src.name)
        state = work / "state"
        state.mkdir()
        scan(state, library)
        settings = Settings()
        catalog = Catalog(state / "catalog.db")
        try:
            sets = {
                "ImageNet-dev": (imagenet_truth(), contents_by_name(catalog, library / "imagenet")),
                "COCO-128": (coco_truth(), contents_by_name(catalog, library / "coco")),
            }
            rows = accuracy(catalog, settings, args.trials, sets)
        finally:
            catalog.close()
        print(
            f"Taught tags, default embedding (EfficientNet-Lite0 features, int8), "
            f"{args.trials} draws each, photos not used to teach"
        )
        print_rows(rows)
        if clip_installed():
            # The library scanned again with CLIP: taught tags then read its embeddings.
            scan(state, library, CONFIG.replace("[clip]\nenabled = false\n", ""), clip=True)
            catalog = Catalog(state / "catalog.db")
            try:
                clip_rows = accuracy(catalog, settings, args.trials, sets)
            finally:
                catalog.close()
            print("\nThe same with CLIP embeddings")
            print_rows(clip_rows)
        else:
            print("CLIP: no CLIP model installed (`tagd models export clip`), not compared")
        seconds, size = apply_time(work, args.files)
        ok = "yes" if seconds <= 2.0 or args.files < 100_000 else "NO"
        print(
            f"apply a taught tag to {args.files:,} stored embeddings: {seconds:.2f} s "
            f"(target <= 2 s at 100,000: {ok}); catalog {size:.0f} MB"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
