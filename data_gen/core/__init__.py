"""What every stage shares, and nothing physical: errors and their one-line form
(:mod:`~data_gen.core.errors`), the command-line wrapper (:mod:`~data_gen.core.cli`), paths,
caches and atomic writes (:mod:`~data_gen.core.paths`), checked values and typed settings
(:mod:`~data_gen.core.values`, :mod:`~data_gen.core.typed`), the environment the project
reads (:mod:`~data_gen.core.environment`), name registries (:mod:`~data_gen.core.registry`)
and HTML pages from templates (:mod:`~data_gen.core.html`).

It imports nothing else of the project (an import-linter contract), so the physics and data
modules of ``data_gen`` and every stage of ``residual_train`` build on it.
"""
