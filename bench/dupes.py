"""Near-duplicate accuracy of `tagd dupes` on variants of real photos.

Builds a temporary library: every photo of the dev sets (COCO-128, faces,
ImageNet-dev: the distinct photos), plus five variants of every SOURCE_STEP-th
one: 50 % resize, JPEG quality 40, a 10 % crop (90 % of width and height at a
random offset), a PNG re-encode and a left-right mirror. Runs `tagd scan`
(only the hash analyzer) and `tagd dupes --json`, and prints per variant kind
how many were grouped with their original (recall), the precision of all
grouped pairs, and every group that joins two distinct photos (must be none;
faces/img11_reflection.jpg is a mirror of img11.jpg by design and counts as a
true duplicate). Run: .venv/bin/python bench/dupes.py [--threshold BITS]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from itertools import combinations
from pathlib import Path

import cv2

from tagd.config import Settings
from tagd.paths import models_dir

REPO = Path(__file__).resolve().parents[1]
EVAL = REPO.parent / "shared" / "eval"
SETS = ("objects-coco128-train", "faces", "classes-imagenet-dev")
SOURCE_STEP = 3
KNOWN = {frozenset({"faces/img11.jpg", "faces/img11_reflection.jpg"})}
CONFIG = """[xmp]
enabled = false
[objects]
enabled = false
[ocr]
enabled = false
[faces]
enabled = false
[concepts]
enabled = false
[clip]
enabled = false
[nsfw]
enabled = false
"""


def variants(image, rng: random.Random) -> dict[str, tuple[str, object, list[int]]]:
    h, w = image.shape[:2]
    cw, ch = int(w * 0.9), int(h * 0.9)
    x0, y0 = rng.randint(0, w - cw), rng.randint(0, h - ch)
    return {
        "resize50": (".jpg", cv2.resize(image, (w // 2, h // 2), interpolation=cv2.INTER_AREA), []),
        "jpeg40": (".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 40]),
        "crop10": (".jpg", image[y0 : y0 + ch, x0 : x0 + cw], []),
        "png": (".png", image, []),
        "mirror": (".jpg", image[:, ::-1], []),
    }


def tagd(*args: str, env: dict[str, str]) -> str:
    cmd = [sys.executable, "-m", "tagd", *args]
    return subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threshold", type=int, default=None)
    args = parser.parse_args()
    if not EVAL.is_dir():
        print(f"skipped: {EVAL} is absent (needs ../shared/eval)")
        return 0
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        lib, source_of, kind_of = Path(tmp) / "lib", {}, {}
        n_sources = 0
        for name in SETS:
            photos = sorted((EVAL / name / "images").iterdir())
            (lib / name).mkdir(parents=True)
            for i, photo in enumerate(photos):
                rel = f"{name}/{photo.name}"
                target = lib / rel
                target.write_bytes(photo.read_bytes())
                source_of[str(target)], kind_of[str(target)] = rel, "original"
                if i % SOURCE_STEP:
                    continue
                n_sources += 1
                image = cv2.imread(str(photo), cv2.IMREAD_COLOR)
                for kind, (ext, pixels, params) in variants(image, rng).items():
                    out = lib / name / f"{photo.stem}__{kind}{ext}"
                    cv2.imwrite(str(out), pixels, params)
                    source_of[str(out)], kind_of[str(out)] = rel, kind
        env = os.environ | {
            "TAGD_STATE_DIR": f"{tmp}/state",
            "TAGD_MODELS_DIR": str(models_dir(Settings())),
            "PYTHONPATH": str(REPO),
        }
        (Path(tmp) / "c.toml").write_text(CONFIG)
        start = time.perf_counter()
        tagd("--config", f"{tmp}/c.toml", "scan", str(lib), env=env)
        scan_s = time.perf_counter() - start
        extra = [] if args.threshold is None else ["--threshold", str(args.threshold)]
        start = time.perf_counter()
        doc = json.loads(tagd("--config", f"{tmp}/c.toml", "dupes", "--json", *extra, env=env))
        dupes_s = time.perf_counter() - start
    group_of: dict[str, int] = {}
    for gi, g in enumerate(doc["groups"]):
        for member in [g["keep"], *g["others"]]:
            group_of[member["path"]] = gi
    # Recall: a variant counts when it shares a group with its original.
    originals = {rel: p for p, rel in source_of.items() if kind_of[p] == "original"}
    kinds = ["resize50", "jpeg40", "crop10", "png", "mirror"]
    print(
        f"library: {len(source_of)} files, {n_sources} sources × 5 variants; "
        f"threshold {doc['threshold']} bits; scan {scan_s:.1f} s, dupes {dupes_s:.2f} s"
    )
    print("| variant | grouped with original | recall |\n| --- | --- | --- |")
    for kind in kinds:
        paths = [p for p, k in kind_of.items() if k == kind]
        hit = sum(
            1
            for p in paths
            if p in group_of and group_of[p] == group_of.get(originals[source_of[p]], -1)
        )
        print(f"| {kind} | {hit}/{len(paths)} | {hit / len(paths):.3f} |")
    true_pairs = false_pairs = 0
    wrong: set[frozenset[str]] = set()
    for g in doc["groups"]:
        members = [m["path"] for m in [g["keep"], *g["others"]]]
        for a, b in combinations(members, 2):
            sa, sb = source_of[a], source_of[b]
            if sa == sb or frozenset({sa, sb}) in KNOWN:
                true_pairs += 1
            else:
                false_pairs += 1
                wrong.add(frozenset({sa, sb}))
    precision = true_pairs / max(1, true_pairs + false_pairs)
    known_found = all(
        (a := group_of.get(str(lib / x))) is not None and a == group_of.get(str(lib / y))
        for x, y in map(sorted, KNOWN)
    )
    print(f"\nprecision (pairs): {precision:.3f} ({true_pairs} true, {false_pairs} false)")
    print(f"known near-duplicates grouped (img11 / img11_reflection): {known_found}")
    print(f"distinct photos grouped together: {'never' if not wrong else len(wrong)}")
    for pair in sorted(map(sorted, wrong)):
        print("  ", " + ".join(pair))
    return 0


if __name__ == "__main__":
    sys.exit(main())
