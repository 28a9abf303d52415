"""ImageNet top-1 / top-5 through tagd's analyzer path, per classifier variant, and the
concept tags a few photos get.

Each photo is read and decoded by tagd's decoder (DCT-reduced JPEG decode at
the concepts analyzer's min_long_side), classified by the concepts analyzer
(ConceptClassifier.analyze, the code `tagd scan` runs) and scored against
../shared/eval/classes-imagenet-dev/labels.json. Variants run side by side in
one process, so their timings compare (the machines are shared: quote ratios).

    .venv/bin/python bench/classes.py [--variants all|default] [--tags 8]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from tagd.analyzers.concepts import ConceptClassifier
from tagd.config import ConceptTagSettings, RuntimeSettings, Settings
from tagd.media.image import decode_image
from tagd.paths import models_dir
from tagd.policy.concepts import class_keys, concept_tags
from tagd.records import Detection
from tagd.runtime.manifest import default_for, load_manifest
from tagd.runtime.model import model_for

REPO = Path(__file__).resolve().parents[1]
EVAL = REPO.parent / "shared" / "eval" / "classes-imagenet-dev"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", choices=("all", "default"), default="all")
    parser.add_argument("--tags", type=int, default=8, help="photos whose concept tags to show")
    args = parser.parse_args()
    if not (EVAL / "labels.json").is_file():
        print(f"skipped: {EVAL} is absent (the shared eval set)")
        return 0
    specs = load_manifest(models_dir(Settings()))
    default = default_for(specs, "classes")
    if default is None:
        print("skipped: no classifier installed (tagd models fetch)")
        return 0
    chosen = [s for s in specs.values() if s.task == "classes"]
    if args.variants == "default":
        chosen = [default]
    chosen.sort(key=lambda s: (s is not default, s.name))
    truth = json.loads((EVAL / "labels.json").read_text())["labels"]
    names = sorted(truth)
    runtime = RuntimeSettings(backend="cpu", threads=0)
    analyzers = [
        ConceptClassifier(model_for(s, models_dir(Settings()), runtime), top_k=5, min_score=0.0)
        for s in chosen
    ]
    # Decode once with tagd's decoder, as the pipeline does for every analyzer.
    t0 = time.perf_counter()
    images = [
        decode_image(
            (EVAL / "images" / n).read_bytes(), min_long_side=analyzers[0].min_long_side
        ).image
        for n in names
    ]
    decode_ms = (time.perf_counter() - t0) * 1000 / len(names)
    keys = class_keys(chosen[0].labels)

    print(f"ImageNet dev set: {len(names)} photos, decode {decode_ms:.1f} ms/photo (reduced)")
    print(f"{'variant':<30} {'top-1':>6} {'top-5':>6} {'ms/photo':>9} {'vs default':>10}")
    results = {}
    for spec, analyzer in zip(chosen, analyzers, strict=True):
        analyzer.analyze(images[:2])  # load and warm up
        t0 = time.perf_counter()
        found = []
        for start in range(0, len(images), 8):
            found.extend(analyzer.analyze(images[start : start + 8]))
        ms = (time.perf_counter() - t0) * 1000 / len(images)
        ranks = [
            [f.label for f in row].index(keys[truth[n]["class_index"]])
            if keys[truth[n]["class_index"]] in [f.label for f in row]
            else 99
            for n, row in zip(names, found, strict=True)
        ]
        results[spec.name] = (found, ms)
        top1 = float(np.mean([r == 0 for r in ranks]))
        top5 = float(np.mean([r < 5 for r in ranks]))
        base = results[chosen[0].name][1]
        mark = "*" if spec is default else " "
        print(f"{mark}{spec.name:<29} {top1:>6.0%} {top5:>6.0%} {ms:>9.2f} {ms / base:>9.2f}x")
    print("(* = the default variant; ratios against it, same process)")

    # Concept tags through the shipped taxonomy (top 10 stored, as `tagd scan` does).
    if args.tags:
        analyzer = ConceptClassifier(analyzers[0].model, top_k=10, min_score=0.005)
        # Dogs, food and scenes (indices 151-268 and 920+) show the taxonomy at work;
        # the rest of the set is mostly objects no photo tag is made of.
        wanted = [n for n in names if 151 <= truth[n]["class_index"] <= 268]
        wanted += [n for n in names if truth[n]["class_index"] >= 920]
        picked = wanted[:2] + wanted[-(args.tags - 2) :] if args.tags > 2 else wanted[:1]
        found = analyzer.analyze([images[names.index(n)] for n in picked])
        print(f"\nconcept tags ({chosen[0].name}, default thresholds):")
        for n, row in zip(picked, found, strict=True):
            dets = [Detection(f.label, f.score, None) for f in row]
            tags = concept_tags("AI", ConceptTagSettings(), dets)
            shown = ", ".join(f"{t.name.split('|', 2)[-1]} {t.score:.2f}" for t in tags) or "-"
            print(f"  {n:<42} {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
