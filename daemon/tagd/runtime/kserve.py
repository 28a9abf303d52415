"""One KServe v2 inference server (Open Inference Protocol), over gRPC.

OpenVINO Model Server and NVIDIA Triton both speak it; tritonclient is the
client. gRPC rather than REST: tensors travel as raw bytes in one protobuf
message, with no JSON and no base64, and one HTTP/2 connection carries every
concurrent request (the client is thread-safe).

Failures come in two kinds, because they call for different answers:
`EndpointDown` (cannot connect, timed out, server error): try another server
and look at this one again later; `ModelMissing` (the server lacks this model
at this version, or answers with the wrong tensors): that server cannot serve
this model, whatever the others do.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_URL = re.compile(r"^grpc://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})/?$")

# numpy dtype -> the protocol's datatype names
_DATATYPES = {
    np.dtype(np.float32): "FP32",
    np.dtype(np.float16): "FP16",
    np.dtype(np.uint8): "UINT8",
    np.dtype(np.int8): "INT8",
    np.dtype(np.int32): "INT32",
    np.dtype(np.int64): "INT64",
    np.dtype(np.bool_): "BOOL",
}

PROBE_TIMEOUT = 5.0  # seconds for a readiness check

# gRPC status codes that say the server is not there (or not answering in time).
# Any other error is the server's answer about this model or this request (not
# found, a tensor above its message limit, an error inside the model): another
# model may still run there.
_DOWN_CODES = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED")


class EndpointError(ValueError):
    """A URL that is not a KServe v2 gRPC address."""


class EndpointDown(RuntimeError):
    """The server did not answer (or answered with a server error)."""


class ModelMissing(RuntimeError):
    """The server cannot run this model at this version."""


def parse_url(url: str) -> str:
    """host:port of a grpc://host:port URL (raises EndpointError)."""
    match = _URL.match(url.strip())
    if url.startswith(("http://", "https://")):
        raise EndpointError(
            "tagd talks to inference servers over gRPC: give the server's gRPC port as "
            "grpc://host:port (Triton: 8001; OVMS: its --port)"
        )
    if not match or not 0 < int(match.group(2)) < 65536:
        raise EndpointError("must be grpc://host:port (e.g. grpc://192.168.1.20:8001)")
    return f"{match.group(1)}:{match.group(2)}"


def model_version(sha256: str) -> str:
    """The version number a model is served under: its sha256's first 48 bits.

    KServe v2 servers name versions by number (a folder of the repository), so
    a model's version says which file it is: a server holding another file of
    the same model answers "not found" instead of different results."""
    return str(int(sha256[:12], 16))


@dataclass(frozen=True)
class Tensor:
    name: str
    array: np.ndarray


def wire_bytes(inputs: Sequence[Tensor]) -> int:
    return sum(t.array.nbytes for t in inputs)


class KServeClient:
    """Calls to one server; safe to share between threads."""

    def __init__(self, url: str, timeout: float) -> None:
        from tritonclient.grpc import InferenceServerClient

        self.url = url
        self.timeout = timeout
        # gRPC's own reconnect backoff grows to two minutes: a server back from a
        # restart would sit unused that long. tagd keeps its own backoff (a minute
        # at most, tagd.runtime.endpoints), so the channel retries within seconds.
        options = [
            ("grpc.max_send_message_length", 2**31 - 1),
            ("grpc.max_receive_message_length", 2**31 - 1),
            ("grpc.initial_reconnect_backoff_ms", 500),
            ("grpc.min_reconnect_backoff_ms", 500),
            ("grpc.max_reconnect_backoff_ms", 5000),
        ]
        self._client = InferenceServerClient(parse_url(url), channel_args=options)

    def ready(self, model: str, version: str) -> None:
        """Raise EndpointDown or ModelMissing unless the server serves this model now."""
        # A probe answers at once or never: it need not wait as long as a batch.
        timeout = min(self.timeout, PROBE_TIMEOUT)
        if not self._call(self._client.is_server_ready, client_timeout=timeout):
            raise EndpointDown(f"{self.url} is not ready")
        ok = self._call(self._client.is_model_ready, model, version, client_timeout=timeout)
        if not ok:
            raise ModelMissing(
                f"{self.url} does not serve {model} version {version} (the file installed "
                "here): load the output of `tagd models repository` there"
            )

    def infer(
        self, model: str, version: str, inputs: Sequence[Tensor], outputs: Sequence[str]
    ) -> list[np.ndarray]:
        """The named outputs, in that order, for these inputs."""
        from tritonclient.grpc import InferInput, InferRequestedOutput

        wired = []
        for tensor in inputs:
            array = np.ascontiguousarray(tensor.array)
            kind = _DATATYPES.get(array.dtype)
            if kind is None:
                raise ModelMissing(f"{model}: cannot send {array.dtype} tensors")
            item = InferInput(tensor.name, list(array.shape), kind)
            item.set_data_from_numpy(array)
            wired.append(item)
        asked = [InferRequestedOutput(name) for name in outputs]
        result = self._call(
            self._client.infer,
            model,
            wired,
            model_version=version,
            outputs=asked,
            client_timeout=self.timeout,
        )
        arrays = []
        for name in outputs:
            try:
                array = result.as_numpy(name)
            except Exception as exc:  # a malformed answer: tritonclient's own errors
                raise ModelMissing(f"{self.url} answered {model}: bad {name}: {exc}") from None
            if array is None:
                raise ModelMissing(f"{self.url} answered {model} without its output {name!r}")
            arrays.append(array)
        return arrays

    def close(self) -> None:
        with contextlib.suppress(Exception):  # a broken channel: nothing left to close
            self._client.close()

    def _call(self, method, *args, **kwargs):  # type: ignore[no-untyped-def]
        from tritonclient.utils import InferenceServerException

        try:
            return method(*args, **kwargs)
        except InferenceServerException as exc:
            status = str(exc.status() or "")
            message = f"{self.url}: {exc.message() or status}"
            if status and not any(code in status for code in _DOWN_CODES):
                raise ModelMissing(message) from None
            raise EndpointDown(message) from None
