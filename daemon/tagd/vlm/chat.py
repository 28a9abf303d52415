"""One OpenAI-compatible chat server (LM Studio, Ollama, llama.cpp server, vLLM):
`POST {url}/chat/completions` with text and image_url parts, `GET {url}/models`
as the readiness check. The standard library's HTTP client: one request at a
time per call, no connection state to share between threads.

Failures, as the endpoint pool sorts them (tagd.runtime.endpoints): cannot
connect, timed out or a 5xx: `EndpointDown`; a 4xx (unknown model, a request
it refuses): `ModelMissing`; an answer that is not a chat completion, or one
cut short: `BadAnswer`, for the file, not the server.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from typing import Any

from tagd.runtime.kserve import EndpointDown, ModelMissing

MAX_BODY = 4 * 1024 * 1024  # an answer of a few hundred tokens is a few KB


class BadAnswer(ValueError):
    """The server answered, but not with a usable chat completion."""


class ChatClient:
    def __init__(self, url: str, api_key: str, timeout: float) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    def ready(self, model: str, version: str) -> None:
        body = self._request("GET", "/models", None, timeout=min(self.timeout, 10.0))
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise EndpointDown(f"{self.url}/models: not an OpenAI-compatible model list")

    def complete(self, model: str, messages: list[dict[str, Any]], max_tokens: int) -> str:
        """The answer's text (raises BadAnswer when there is none, or it was cut short)."""
        request = {
            "model": model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": 0,
        }
        body = self._request("POST", "/chat/completions", request, timeout=self.timeout)
        try:
            choice = body["choices"][0]
            content = choice["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise BadAnswer(f"{self.url}: the answer is not a chat completion") from None
        if choice.get("finish_reason") == "length":
            raise BadAnswer(f"{self.url}: the answer was cut short at vlm.max_tokens")
        if not isinstance(content, str):
            raise BadAnswer(f"{self.url}: the answer has no text")
        return content

    def _request(self, method: str, path: str, payload: object, timeout: float) -> Any:
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.api_key:
            request.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                raw = response.read(MAX_BODY + 1)
        except urllib.error.HTTPError as exc:
            detail = exc.read(2000).decode("utf-8", "replace").strip()
            message = f"{self.url}{path}: HTTP {exc.code} {detail[:300]}"
            if exc.code >= 500 or exc.code == 429:  # the server's trouble (or too busy)
                raise EndpointDown(message) from None
            raise ModelMissing(message) from None
        except (
            urllib.error.URLError,
            TimeoutError,
            ConnectionError,
            http.client.HTTPException,  # a connection cut mid-answer
        ) as exc:
            reason = getattr(exc, "reason", exc)
            raise EndpointDown(f"{self.url}{path}: {reason}") from None
        if len(raw) > MAX_BODY:
            raise BadAnswer(f"{self.url}{path}: the answer is over {MAX_BODY // 2**20} MB")
        try:
            return json.loads(raw)
        except ValueError:
            start = raw[:60].decode("utf-8", "replace")
            raise BadAnswer(f"{self.url}{path}: the answer is not JSON ({start!r})") from None
