"""tagd's HTTP API (`tagd serve`): the catalog read over HTTP, under /api/v1.

Kept free of imports at package level so that `tagd.api.listen`, which the
config checks use, does not pull in the web framework.
"""
