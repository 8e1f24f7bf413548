"""The wheel carries the Hydra config tree: ``conf/`` is copied into ``data_gen/conf``
(where :mod:`data_gen.core.paths` finds it when no checkout is around). Everything else is in
pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithConf(build_py):
    def run(self) -> None:
        super().run()
        src = Path(__file__).resolve().parent / "conf"
        if src.is_dir() and not self.editable_mode:
            shutil.copytree(src, Path(self.build_lib) / "data_gen" / "conf", dirs_exist_ok=True)


setup(cmdclass={"build_py": BuildPyWithConf})
