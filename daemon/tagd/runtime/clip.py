"""CLIP at run time: image and text embeddings, zero-shot probabilities. No torch.

One manifest entry (task "clip") per exported variant: `file` is the image
tower, `files` holds the text tower, the tokenizer (`tokenizer.json` for the
`tokenizers` library) and a JSON config with the preprocessing, the logit
scale and the text settings. The two towers are two ManagedModels, so each is
loaded on first use and dropped when idle on its own: a library scan needs
the image tower for hours and the text tower for one batch of prompts.

The text tower takes `input_ids` only. CLIP's text transformer is causal and
pools the hidden state at the end-of-text token, so padding placed after it
can never change the result: an attention mask would be a no-op (export
checks this against the checkpoint run with its mask). Without it the tower
fits the one-input Session every engine here offers, OpenVINO included.
Prompts are padded to the longest one in the batch, not to 77: a six-word
prompt costs a tenth of the full-length run.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tagd.runtime.endpoints import EndpointPool
from tagd.runtime.manifest import ModelError, ModelSpec, verified_path
from tagd.runtime.model import ManagedModel, require_task
from tagd.runtime.vision import (
    ImagePrep,
    companion,
    image_prep,
    l2_normalise,
    load_config,
    main_file_spec,
)

TASK = "clip"


class ClipModel:
    def __init__(
        self,
        spec: ModelSpec,
        models_dir: Path,
        *,
        backend: str = "cpu",
        threads: int = 0,
        idle_unload: float = 300.0,
        batch_size: int = 16,
        streams: int = 1,
        remote: EndpointPool | None = None,
        local_fallback: bool = True,
    ) -> None:
        require_task(spec, TASK)
        self.spec = spec
        self.models_dir = models_dir
        self.batch_size = batch_size
        self._options: dict[str, Any] = {
            "backend": backend,
            "threads": threads,
            "idle_unload": idle_unload,
            "streams": streams,
        }
        # The image tower may run on inference servers; the text tower stays here
        # (it runs once per prompt set, and a repository holds main files only).
        self._remote = {"remote": remote, "local_fallback": local_fallback}
        self._lock = threading.Lock()
        self._config: dict[str, Any] | None = None
        self._prep: ImagePrep | None = None
        self._tokenizer: Any = None
        self._image: ManagedModel | None = None
        self._text: ManagedModel | None = None

    # -- set-up -------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """The export's JSON config (read and checked once)."""
        with self._lock:
            if self._config is None:
                config = load_config(self.spec, self.models_dir)
                for key in ("text_model", "tokenizer", "logit_scale", "context_length"):
                    if key not in config:
                        raise ModelError(f"model {self.spec.name!r}: its config lacks {key!r}")
                self._prep = image_prep(self.spec, config)
                self._image = ManagedModel(
                    main_file_spec(self.spec), self.models_dir, **self._options, **self._remote
                )
                self._image.pixels = self._prep.pixels
                text_spec = companion(self.spec, str(config["text_model"]))
                self._text = ManagedModel(text_spec, self.models_dir, **self._options)
                self._config = config
            return self._config

    def check(self) -> None:
        """Verify every file without loading a model (raises ModelError with the fix)."""
        config = self.config()
        assert self._image is not None and self._text is not None
        self._image.check()
        self._text.check()
        verified_path(companion(self.spec, str(config["tokenizer"])), self.models_dir)

    @property
    def logit_scale(self) -> float:
        return float(self.config()["logit_scale"])

    @property
    def input_size(self) -> tuple[int, int]:
        return self.spec.input

    @property
    def loaded(self) -> bool:
        return any(m is not None and m.loaded for m in (self._image, self._text))

    def unload(self) -> None:
        for model in (self._image, self._text):
            if model is not None:
                model.unload()

    def unload_if_idle(self, now: float | None = None) -> bool:
        dropped = [m.unload_if_idle(now) for m in (self._image, self._text) if m is not None]
        return any(dropped)

    # -- inference ----------------------------------------------------------

    def encode_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """L2-normalised embeddings (N, D) of BGR uint8 images."""
        self.config()
        assert self._prep is not None and self._image is not None
        if not images:
            return np.zeros((0, self.embed_dim), np.float32)
        parts = []
        for start in range(0, len(images), self.batch_size):
            batch = self._prep.prepare(images[start : start + self.batch_size])
            parts.append(self._image.session().run(batch)[0])
        return l2_normalise(np.concatenate(parts))

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised embeddings (M, D) of prompts (truncated to the context length)."""
        self.config()
        assert self._text is not None
        if not texts:
            return np.zeros((0, self.embed_dim), np.float32)
        parts = []
        for start in range(0, len(texts), self.batch_size):
            ids = self.tokenize(texts[start : start + self.batch_size])
            parts.append(self._text.session().run(ids)[0])
        return l2_normalise(np.concatenate(parts))

    def tokenize(self, texts: Sequence[str]) -> np.ndarray:
        """Token ids (M, L) int64: BOS ... EOS, right-padded to the longest, L <= context."""
        encodings = self._tokenizer_().encode_batch(list(texts))
        return np.asarray([e.ids for e in encodings], np.int64)

    def zero_shot(self, images: Sequence[np.ndarray], prompts: Sequence[str]) -> np.ndarray:
        """(N, M) probabilities over the prompts for each image."""
        return self.probabilities(self.encode_images(images), self.encode_texts(prompts))

    def probabilities(self, image_embeds: np.ndarray, text_embeds: np.ndarray) -> np.ndarray:
        """softmax(logit_scale * image . text) over the prompts, from stored embeddings."""
        logits = self.logit_scale * (np.asarray(image_embeds) @ np.asarray(text_embeds).T)
        logits = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(logits.astype(np.float64))
        return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)

    @property
    def embed_dim(self) -> int:
        return int(self.config().get("embed_dim", 0))

    def _tokenizer_(self) -> Any:
        config = self.config()
        with self._lock:
            if self._tokenizer is None:
                self._tokenizer = _load_tokenizer(self.spec, self.models_dir, config)
            return self._tokenizer


def _load_tokenizer(spec: ModelSpec, models_dir: Path, config: dict[str, Any]) -> Any:
    """The checkpoint's tokenizer with CLIP's batch settings: truncate to the context
    (BOS and EOS kept), pad on the right with the checkpoint's pad token."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise ModelError("CLIP text prompts need the `tokenizers` package") from None
    path = verified_path(companion(spec, str(config["tokenizer"])), models_dir)
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=int(config["context_length"]))
    pad_id = int(config["pad_token_id"])
    tokenizer.enable_padding(pad_id=pad_id, pad_token=tokenizer.id_to_token(pad_id) or "")
    return tokenizer
