"""Evaluation on real photographs (docs/design.md §8).

``python -m residual_train.evaluate model=REF images=DIR|builtin out=DIR`` renders
real photographs through the lens and sensor of a model's card, corrects them, and
compares the model with classical pipelines: ``metrics.json`` and ``index.html``.
"""

from residual_train.evaluate.images import BUILTIN, load_images
from residual_train.evaluate.page import write_page
from residual_train.evaluate.run import card_isos, evaluate, write_metrics

__all__ = ["BUILTIN", "card_isos", "evaluate", "load_images", "write_metrics", "write_page"]
