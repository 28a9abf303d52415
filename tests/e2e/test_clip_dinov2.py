"""CLIP and DINOv2: export through `tagd models export`, run without torch, compare with torch.

No CLIP or DINOv2 weights reach this machine, so the checkpoints are tiny,
randomly initialised transformers models of the real architectures (ViT
image towers, a causal text transformer, a real byte-level BPE tokenizer in
CLIP's layout trained here on a few sentences), saved as Hugging Face
checkpoint folders: exactly what a user passes to `--from` after
`hf download`. The torch reference runs transformers' own processors
(PIL backend) and tokenizer; tagd's runtime runs the exported files.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SHARED

from tagd.runtime.manifest import ModelError, load_manifest

SHARED_PHOTOS = SHARED / "eval" / "objects-coco128-train"
PROMPTS = [
    "a photo of a person",
    "a photo of a dog",
    "a bus on a city street",
    "a plate of food on a table",
    "snow",
    # Longer than CLIP's 77-token context once split into characters: truncation.
    "a very long caption " + " ".join(f"word{i} and more" for i in range(40)),
]
SENTENCES = [
    "a photo of a person riding a bicycle down the street",
    "a photo of a dog and a cat sleeping on a sofa",
    "a red bus on a busy city street in the rain",
    "a plate of food on a wooden table with a cup of coffee",
    "snow on the mountains above a lake at sunset",
    "a very long caption with many words and more words",
]
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


# -- tiny checkpoints --------------------------------------------------------


def clip_tokenizer(max_length: int = 77):  # -> transformers CLIPTokenizer
    """A real CLIP BPE tokenizer: byte alphabet, </w> word ends, merges learned here,
    special tokens last (so EOS has the highest id, as in OpenAI's vocabulary)."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    bpe = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    bpe.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(
                Regex(r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""),
                behavior="removed",
                invert=True,
            ),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    trainer = trainers.BpeTrainer(
        vocab_size=700, end_of_word_suffix="</w>", initial_alphabet=alphabet, show_progress=False
    )
    bpe.train_from_iterator(SENTENCES, trainer)
    trained = json.loads(bpe.to_str())["model"]
    tokens = [*alphabet, *(c + "</w>" for c in alphabet)]
    seen = set(tokens)
    for token, _ in sorted(trained["vocab"].items(), key=lambda kv: kv[1]):
        if token not in seen:
            tokens.append(token)
            seen.add(token)
    tokens += [BOS, EOS]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in trained["merges"]]
    vocab = {token: i for i, token in enumerate(tokens)}
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)


def save_tiny_clip(folder: Path) -> None:
    import torch
    from transformers import CLIPConfig, CLIPModel
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    tokenizer = clip_tokenizer()
    config = CLIPConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "max_position_embeddings": 77,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": 48,
            "patch_size": 8,
        },
        projection_dim=24,
    )
    torch.manual_seed(0)
    CLIPModel(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    # Shorter side to 56 then a 48 crop: resize and crop both do something.
    CLIPImageProcessorPil(
        size={"shortest_edge": 56}, crop_size={"height": 48, "width": 48}
    ).save_pretrained(folder)


def save_tiny_dinov2(folder: Path) -> None:
    import torch
    from transformers import Dinov2Config, Dinov2Model
    from transformers.models.bit.image_processing_pil_bit import BitImageProcessorPil

    # Trained at 56 px, run at a 32 px crop: the position embeddings are interpolated,
    # as the real checkpoints' (518 px) are at 224.
    config = Dinov2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        mlp_ratio=2,
        image_size=56,
        patch_size=8,
    )
    torch.manual_seed(1)
    Dinov2Model(config).eval().save_pretrained(folder)
    BitImageProcessorPil(
        size={"shortest_edge": 40},
        crop_size={"height": 32, "width": 32},
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    ).save_pretrained(folder)


# -- fixtures ----------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Both checkpoints exported by the CLI, fp32 and int8, into one models folder."""
    pytest.importorskip("torch", reason="export needs torch (pip install 'tagd[export]')")
    pytest.importorskip("transformers", reason="export needs transformers")
    pytest.importorskip("onnx", reason="export needs onnx")
    from tagd.cli.main import main

    root = tmp_path_factory.mktemp("clip-dinov2")
    models = root / "models"
    config = root / "config.toml"
    config.write_text(f'[runtime]\nmodels_dir = "{models}"\n', encoding="utf-8")
    clip_ckpt, dino_ckpt = root / "tiny-clip", root / "tiny-dinov2"
    save_tiny_clip(clip_ckpt)
    save_tiny_dinov2(dino_ckpt)
    # fp32 also as OpenVINO IR where OpenVINO is installed (it is a runtime dependency).
    fp32_format = "both" if importlib.util.find_spec("openvino") else "onnx"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TAGD_STATE_DIR", str(root / "state"))
        for family, ckpt in (("clip", clip_ckpt), ("dinov2", dino_ckpt)):
            for quantize, fmt in (("none", fp32_format), ("int8", "onnx")):
                args = ["--config", str(config), "models", "export", family, "--from", str(ckpt)]
                code = main([*args, "--quantize", quantize, "--format", fmt])
                assert code == 0, (family, quantize)
        yield {"models": models, "clip": clip_ckpt, "dinov2": dino_ckpt, "config": config}


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    """Real photos of different shapes (generated ones when the shared set is absent)."""
    folder = SHARED_PHOTOS / "images"
    paths = sorted(folder.glob("*.jpg"))[:5] if folder.is_dir() else []
    images = [cv2.imread(str(p)) for p in paths]
    if not images:
        rng = np.random.default_rng(0)
        images = [rng.integers(0, 256, (h, w, 3), np.uint8) for h, w in ((480, 640), (500, 333))]
    # One portrait crop, so both orientations of the shorter-side resize run.
    images.append(np.ascontiguousarray(images[0][:, : images[0].shape[1] // 3]))
    return images


def clip_model(exported: dict[str, Path], name: str):  # -> ClipModel
    from tagd.runtime.clip import ClipModel

    spec = load_manifest(exported["models"])[name]
    return ClipModel(spec, exported["models"], backend="cpu", threads=2, idle_unload=60)


def torch_zero_shot(ckpt: Path, photos: list[np.ndarray], prompts: list[str]) -> np.ndarray:
    """What a transformers user computes: processor, tokenizer, CLIPModel, softmax."""
    import torch
    from transformers import AutoTokenizer, CLIPModel
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    model = CLIPModel.from_pretrained(str(ckpt)).eval()
    processor = CLIPImageProcessorPil.from_pretrained(str(ckpt))
    tokenizer = AutoTokenizer.from_pretrained(str(ckpt))
    rgb = [cv2.cvtColor(im, cv2.COLOR_BGR2RGB) for im in photos]  # the same decoded pixels
    pixels = processor(images=rgb, return_tensors="pt")["pixel_values"]
    tokens = tokenizer(prompts, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        out = model(pixel_values=pixels, **tokens)
    return out.logits_per_image.softmax(dim=1).numpy()


# -- CLIP --------------------------------------------------------------------


def test_clip_manifest_entry_names_every_file(exported: dict[str, Path]):
    spec = load_manifest(exported["models"])["clip-tiny-clip"]
    assert (spec.task, spec.family, spec.variant, spec.default) == ("clip", "clip", "fp32", False)
    assert spec.file == "clip_tiny_clip_image.onnx" and spec.input == (48, 48)
    assert set(spec.files) == {
        "clip_tiny_clip_text.onnx",
        "clip_tiny_clip_tokenizer.json",
        "clip_tiny_clip_config.json",
    }
    config = json.loads((exported["models"] / "clip_tiny_clip_config.json").read_text())
    assert config["context_length"] == 77 and config["embed_dim"] == 24
    assert config["image"]["resize_shortest_edge"] == 56 and config["image"]["crop"] == [48, 48]
    assert abs(config["logit_scale"] - np.exp(np.log(1 / 0.07))) < 1e-3  # CLIP's initial scale
    assert spec.metrics["image_cosine"] >= 0.9999 and spec.metrics["text_cosine"] >= 0.9999
    clip_model(exported, "clip-tiny-clip").check()


def test_clip_zero_shot_matches_torch(exported: dict[str, Path], photos: list[np.ndarray]):
    expected = torch_zero_shot(exported["clip"], photos, PROMPTS)
    model = clip_model(exported, "clip-tiny-clip")
    probs = model.zero_shot(photos, PROMPTS)
    assert probs.shape == (len(photos), len(PROMPTS))
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    assert expected.std() > 1e-3  # the comparison is not between two uniform tables
    diff = float(np.abs(probs - expected).max())
    print(f"CLIP fp32 zero-shot: max |p_onnx - p_torch| = {diff:.2e}")
    assert diff < 1e-4


def test_clip_int8_parity_is_reported(exported: dict[str, Path], photos: list[np.ndarray]):
    spec = load_manifest(exported["models"])["clip-tiny-clip-int8"]
    assert spec.variant == "int8" and spec.default  # written last: the default of its task
    assert "clip_tiny_clip_tokenizer.json" in spec.files  # shared with the fp32 variant
    expected = torch_zero_shot(exported["clip"], photos, PROMPTS)
    fp32, int8 = clip_model(exported, "clip-tiny-clip"), clip_model(exported, spec.name)
    cos_img = (fp32.encode_images(photos) * int8.encode_images(photos)).sum(1).min()
    cos_txt = (fp32.encode_texts(PROMPTS) * int8.encode_texts(PROMPTS)).sum(1).min()
    diff = float(np.abs(int8.zero_shot(photos, PROMPTS) - expected).max())
    print(
        f"CLIP int8: image cosine {cos_img:.5f}, text cosine {cos_txt:.5f}, "
        f"max |p_int8 - p_torch| = {diff:.2e}; export metrics {spec.metrics}"
    )
    # Looser than fp32: int8 moves each embedding a little, and the logit scale
    # (14 here, 100 in trained checkpoints) magnifies that in the probabilities.
    assert cos_img > 0.99 and cos_txt > 0.99
    assert diff < 0.05


def test_clip_tokens_match_transformers(exported: dict[str, Path]):
    from transformers import AutoTokenizer

    expected = AutoTokenizer.from_pretrained(str(exported["clip"]))(
        PROMPTS, padding=True, truncation=True
    )["input_ids"]
    ids = clip_model(exported, "clip-tiny-clip").tokenize(PROMPTS)
    assert ids.tolist() == expected
    eos = json.loads((exported["models"] / "clip_tiny_clip_config.json").read_text())
    assert ids.shape[1] == 77 and ids[-1, -1] == eos["eos_token_id"]  # truncated, EOS kept


def test_clip_text_embedding_does_not_depend_on_batch_padding(exported: dict[str, Path]):
    model = clip_model(exported, "clip-tiny-clip")
    alone = model.encode_texts(["snow"])
    padded = model.encode_texts(["snow", PROMPTS[-1]])[:1]  # padded to 77 tokens here
    np.testing.assert_allclose(alone, padded, atol=1e-5)


def test_clip_towers_unload_when_idle(exported: dict[str, Path], photos: list[np.ndarray]):
    import time

    model = clip_model(exported, "clip-tiny-clip")
    assert not model.loaded
    model.encode_images(photos[:1])
    assert model.loaded
    assert model.unload_if_idle(now=time.monotonic() + 61)
    assert not model.loaded
    assert model.encode_texts(["snow"]).shape == (1, 24)  # loads again on demand


def test_clip_damaged_tokenizer_is_refused(exported: dict[str, Path], tmp_path: Path):
    import shutil

    from tagd.runtime.clip import ClipModel

    spec = load_manifest(exported["models"])["clip-tiny-clip"]
    for name in [spec.file, *spec.files]:
        shutil.copyfile(exported["models"] / name, tmp_path / name)
    (tmp_path / "clip_tiny_clip_tokenizer.json").write_text("{}")
    with pytest.raises(ModelError, match="sha256"):
        ClipModel(spec, tmp_path).encode_texts(["snow"])


# -- DINOv2 ------------------------------------------------------------------


def torch_dinov2(ckpt: Path, photos: list[np.ndarray]) -> np.ndarray:
    import torch
    from transformers import Dinov2Model
    from transformers.models.bit.image_processing_pil_bit import BitImageProcessorPil

    model = Dinov2Model.from_pretrained(str(ckpt)).eval()
    processor = BitImageProcessorPil.from_pretrained(str(ckpt))
    rgb = [cv2.cvtColor(im, cv2.COLOR_BGR2RGB) for im in photos]
    with torch.no_grad():
        cls = model(**processor(images=rgb, return_tensors="pt")).pooler_output.numpy()
    return cls / np.linalg.norm(cls, axis=1, keepdims=True)


@pytest.mark.parametrize(
    ("name", "floor"), [("dinov2-tiny-dinov2", 0.9999), ("dinov2-tiny-dinov2-int8", 0.98)]
)
def test_dinov2_embeddings_match_torch(
    exported: dict[str, Path], photos: list[np.ndarray], name: str, floor: float
):
    from tagd.runtime.image_embedding import ImageEmbedder

    spec = load_manifest(exported["models"])[name]
    assert spec.task == "image-embedding" and spec.input == (32, 32)
    embedder = ImageEmbedder(spec, exported["models"], backend="cpu", threads=2)
    got = embedder.embed(photos)
    expected = torch_dinov2(exported["dinov2"], photos)
    cosine = (got * expected).sum(1)
    print(f"DINOv2 {spec.variant}: worst cosine vs torch {cosine.min():.6f}")
    assert got.shape == (len(photos), 32)
    assert cosine.min() >= floor


def test_openvino_variants_agree_with_onnx(exported: dict[str, Path], photos: list[np.ndarray]):
    pytest.importorskip("openvino")
    from tagd.runtime.image_embedding import ImageEmbedder

    specs = load_manifest(exported["models"])
    onnx_clip, ov_clip = (
        clip_model(exported, n) for n in ("clip-tiny-clip", "clip-tiny-clip-openvino")
    )
    assert ov_clip.spec.variant == "openvino-fp32" and ov_clip.spec.file.endswith(".xml")
    diff = np.abs(ov_clip.zero_shot(photos, PROMPTS) - onnx_clip.zero_shot(photos, PROMPTS))
    assert diff.max() < 1e-4
    dino = [
        ImageEmbedder(specs[n], exported["models"])
        for n in ("dinov2-tiny-dinov2", "dinov2-tiny-dinov2-openvino")
    ]
    assert (dino[0].embed(photos) * dino[1].embed(photos)).sum(1).min() >= 0.9999


# -- errors and import hygiene -----------------------------------------------


def test_hub_id_offline_says_what_to_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from tagd_export.context import ExportContext, ExportError
    from tagd_export.families import clip, dinov2

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ctx = ExportContext(models_dir=tmp_path / "models", cache_dir=tmp_path / "cache")
    with pytest.raises(ExportError) as err:
        clip.export(ctx, "openai/clip-vit-base-patch32", "none", "onnx")
    message = str(err.value)
    assert "tagd models export clip --from openai/clip-vit-base-patch32" in message
    assert "hf download openai/clip-vit-base-patch32 --local-dir DIR" in message
    for family in (clip, dinov2):
        with pytest.raises(ExportError, match=f"tagd models export {family.NAME} --from"):
            family.fetch(ctx)
    with pytest.raises(ExportError, match="not a checkpoint folder"):
        dinov2.export(ctx, str(tmp_path / "no" / "such.bin"), "none", "onnx")
    assert not ctx.models_dir.exists()  # nothing half-written


def test_offline_cli_export_fails_with_instructions(exported: dict[str, Path]):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "tagd", "--config", str(exported["config"]), "models", "export",
         "dinov2", "--from", "facebook/dinov2-small"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "tagd models export dinov2 --from facebook/dinov2-small" in done.stderr


def test_runtime_modules_import_without_torch():
    code = (
        "import sys, tagd.runtime.clip, tagd.runtime.image_embedding;"
        "import tagd_export.families.clip, tagd_export.families.dinov2;"
        "heavy = [m for m in ('torch', 'transformers', 'onnx') if m in sys.modules];"
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
