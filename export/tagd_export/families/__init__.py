"""One module per model family; see tagd_export.registry for the interface."""
