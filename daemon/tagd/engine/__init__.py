"""The analysis process: everything that loads a model runs here.

`tagd run` and `tagd serve` keep the models, onnxruntime, OpenCV and the
decode buffers out of their own process. Scans, deliveries and POST /analyze
go to one child process (`Engine`, client.py), started on first use and ended
after `runtime.idle_unload` seconds without work, which hands every byte of
the analysis back to the system: the idle daemon holds only its scheduler,
the catalog and the HTTP API. A crash or an OOM kill there is one failed job,
not a dead daemon; the next job starts a fresh process.
"""
