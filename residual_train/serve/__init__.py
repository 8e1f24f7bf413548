"""The correction service: upload once, render at any strengths (docs/design.md §4).

``python -m residual_train.serve`` starts it (FastAPI + uvicorn; ``conf/apps/serve.yaml``);
``python -m residual_train.serve keys add USER`` makes a user's key. Modules: ``keys``
(hashed API keys in SQLite), ``store`` (images, their maps, their status), ``jobs`` (the
bounded pool that runs the network), ``render`` (regions, scales, encodings), ``app``
(the HTTP API and the page), ``page.html`` (sliders that compose in the browser).
"""
