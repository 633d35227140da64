"""``tunelab serve``: an OpenAI-compatible HTTP server for base models and trained runs.

``models`` loads what is served (one base shared by the adapters trained on it), ``batching``
runs concurrent requests together on a worker thread, ``protocol`` is the OpenAI request and
response shapes, and ``app`` is the Starlette application that ties them to HTTP.
"""
