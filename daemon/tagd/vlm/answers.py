"""The questions put to the model, and the strict reading of its answers.

One question per tag set: "which of these apply", answered as a JSON object
{"labels": [...]} naming only offered labels; and, when asked for, a caption
{"caption": "..."}. An answer is read strictly: a JSON object (a Markdown code
fence around it is allowed, as many models add one) with exactly the expected
key; labels must be among those offered (case and outer spaces aside).
Anything else is a BadAnswer, and the file is asked again at the next scan: a
tag from a misread answer would be worse than none.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from typing import Any

from tagd.vlm.chat import BadAnswer

VERSION = "1"  # of these questions: a new wording asks every file again
_FENCE = re.compile(r"^```(?:json)?\s*\n?(.*?)\n?```$", re.S)


def labels_question(labels: Sequence[str]) -> str:
    offered = ", ".join(json.dumps(label) for label in labels)
    return (
        "Which of these labels apply to the image? Labels: "
        f"[{offered}]. Answer with only a JSON object and nothing else: "
        '{"labels": [the labels that apply, exactly as written; [] if none]}'
    )


CAPTION_QUESTION = (
    "Describe the image in one short sentence. Answer with only a JSON object and "
    'nothing else: {"caption": "..."}'
)


def messages(question: str, jpeg: bytes) -> list[dict[str, Any]]:
    """One user turn: the question and the image (a data URL), as OpenAI's chat API
    takes them."""
    url = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": question},
                {"type": "image_url", "image_url": {"url": url}},
            ],
        }
    ]


def _object(text: str, key: str) -> Any:
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    if fenced:
        stripped = fenced.group(1).strip()
    try:
        value = json.loads(stripped)
    except ValueError:
        raise BadAnswer(f"the answer is not JSON: {text[:80]!r}") from None
    if not isinstance(value, dict) or set(value) != {key}:
        raise BadAnswer(f'the answer is not {{"{key}": ...}}: {text[:80]!r}')
    return value[key]


def read_labels(text: str, offered: Sequence[str]) -> list[str]:
    """The offered labels the answer names, in the offered spelling."""
    named = _object(text, "labels")
    if not isinstance(named, list) or not all(isinstance(n, str) for n in named):
        raise BadAnswer(f'"labels" is not a list of strings: {text[:80]!r}')
    canonical = {label.strip().casefold(): label for label in offered}
    out = []
    for name in named:
        label = canonical.get(name.strip().casefold())
        if label is None:
            raise BadAnswer(f"the answer names {name!r}, which was not offered")
        if label not in out:
            out.append(label)
    return out


def read_caption(text: str) -> str:
    caption = _object(text, "caption")
    if not isinstance(caption, str) or not caption.strip():
        raise BadAnswer(f'"caption" is not a sentence: {text[:80]!r}')
    return " ".join(caption.split())[:500]
