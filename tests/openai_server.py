"""An OpenAI-compatible chat server on 127.0.0.1 for the VLM tests.

Every request is checked against OpenAI's own request types (the `openai`
package's CompletionCreateParams, validated by pydantic, nested parts
included): a model name, one user message whose content is a text part and
an image_url part holding a JPEG as a data URL. A request that is not is
answered 400 and recorded in `refused`, so a test sees it.

The "model" looks at the image it is sent: a label set offering "bright" and
"dark" gets the one that fits the image's mean level, and a caption says the
image's size and level. `misbehave` maps an image width to how the answers for
images of that width go wrong: "prose" (text, not JSON), "not json" (an HTTP
body that is not JSON), "truncated" (cut at max_tokens) or "500".
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import cv2
import numpy as np
import pydantic
from openai.types.chat import completion_create_params

_REQUEST = pydantic.TypeAdapter(completion_create_params.CompletionCreateParamsNonStreaming)
_OFFERED = re.compile(r"Labels: \[(.*?)\]\.")


def _validated(body: Any) -> dict[str, Any]:
    """The request as OpenAI's types read it; pydantic checks nested parts lazily
    (Iterable fields), so every one is walked."""

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if (
            isinstance(value, list | tuple | Iterator)
            or type(value).__name__ == "ValidatorIterator"
        ):
            return [walk(v) for v in value]
        return value

    return walk(_REQUEST.validate_python(body))


class OpenAIServer:
    def __init__(self, model: str = "test-vlm") -> None:
        self.model = model
        self.misbehave: dict[int, str] = {}
        self.requests: list[dict[str, Any]] = []  # valid chat requests, in order
        self.images: list[tuple[int, int]] = []  # (width, height) of each image sent
        self.refused: list[str] = []
        self.lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> OpenAIServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path == "/v1/models":
                    self._json(200, {"object": "list", "data": [{"id": server.model}]})
                else:
                    self._json(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                if self.path != "/v1/chat/completions":
                    self._json(404, {"error": {"message": "not found"}})
                    return
                size = int(self.headers.get("Content-Length", "0"))
                status, payload = server.answer(self.rfile.read(size))
                if isinstance(payload, bytes):
                    self._raw(status, payload)
                else:
                    self._json(status, payload)

            def _json(self, status: int, payload: Any) -> None:
                self._raw(status, json.dumps(payload).encode())

            def _raw(self, status: int, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def answer(self, raw: bytes) -> tuple[int, Any]:
        try:
            request = _validated(json.loads(raw))
            (message,) = request["messages"]
            assert message["role"] == "user", "one user message"
            parts = {part["type"]: part for part in message["content"]}
            assert set(parts) == {"text", "image_url"}, f"parts {sorted(parts)}"
            assert request["model"] == self.model, f"model {request['model']!r}"
            url = parts["image_url"]["image_url"]["url"]
            assert url.startswith("data:image/jpeg;base64,"), url[:40]
            pixels = np.frombuffer(base64.b64decode(url.split(",", 1)[1]), np.uint8)
            image = cv2.imdecode(pixels, cv2.IMREAD_COLOR)
            assert image is not None, "the image is not a JPEG"
        except (ValueError, AssertionError, KeyError, pydantic.ValidationError) as exc:
            with self.lock:
                self.refused.append(str(exc)[:500])
            return 400, {"error": {"message": f"bad request: {exc}"[:500]}}
        height, width = image.shape[:2]
        with self.lock:
            self.requests.append(request)
            self.images.append((width, height))
        return self._reply(parts["text"]["text"], image, self.misbehave.get(width, ""))

    def _reply(self, question: str, image: np.ndarray, trouble: str) -> tuple[int, Any]:
        level = float(image.mean())
        offered = _OFFERED.search(question)
        if offered:
            names = json.loads(f"[{offered.group(1)}]")
            fits = "bright" if level > 110 else "dark"
            content = json.dumps({"labels": [n for n in names if n == fits]})
        else:
            h, w = image.shape[:2]
            content = json.dumps({"caption": f"A {w}x{h} picture, level {round(level)}."})
        finish = "stop"
        if trouble == "500":
            return 500, {"error": {"message": "out of memory"}}
        if trouble == "not json":
            return 200, b"<html>502 Bad Gateway</html>"
        if trouble == "prose":
            content = "Sure! This picture looks " + ("bright." if level > 110 else "dark.")
        if trouble == "truncated":
            content, finish = content[: len(content) // 2], "length"
        return 200, {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": finish,
                }
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
        }
