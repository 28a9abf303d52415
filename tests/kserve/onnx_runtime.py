"""An MLServer runtime that runs an ONNX file with onnxruntime: a real KServe v2
server (MLServer's own HTTP and gRPC front ends) around the same model files
tagd runs locally. Loaded by MLServer from its model repository (this file is
copied to the repository's root), never imported by tagd.

Test knobs, from the environment of the server process:
- TAGD_KSERVE_DELAY: seconds of extra work per input row (a slower machine);
- TAGD_KSERVE_LOG: a file that gets one line "model rows seconds" per request
  served (seconds: the time the server spent on it).
"""

from __future__ import annotations

import os
import time

import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OnnxModel(MLModel):
    async def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        uri = self.settings.parameters.uri
        self.session = ort.InferenceSession(uri, options, providers=["CPUExecutionProvider"])
        self.names = [o.name for o in self.session.get_outputs()]
        self.delay = float(os.environ.get("TAGD_KSERVE_DELAY", "0"))
        self.log = os.environ.get("TAGD_KSERVE_LOG", "")
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        start = time.perf_counter()
        feeds = {i.name: NumpyCodec.decode_input(i) for i in payload.inputs}
        wanted = [o.name for o in payload.outputs] if payload.outputs else self.names
        arrays = self.session.run(wanted, feeds)
        rows = int(next(iter(feeds.values())).shape[0])
        if self.delay:
            time.sleep(self.delay * rows)  # blocks the server, as real work would
        if self.log:
            with open(self.log, "a", encoding="utf-8") as log:
                log.write(f"{self.name} {rows} {time.perf_counter() - start:.6f}\n")
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            outputs=[
                NumpyCodec.encode_output(name=n, payload=a)
                for n, a in zip(wanted, arrays, strict=True)
            ],
        )
