"""Tags from a vision-language model on OpenAI-compatible chat servers: the
client (chat), the questions and the strict reading of answers (answers), and
the pass that asks about the files (ask). The analyzer is tagd.analyzers.vlm."""
