"""Build hook, beside pyproject.toml (which holds everything else): a wheel carries the
documentation, docs/*.md, as advgrad/docs/, and the run configurations, configs/*.toml, as
advgrad/configs/, so that `advgrad docs TOPIC` and `--config NAME` work after `pip install`.
The repository keeps one copy of each at its top; a checkout reads them there (advgrad/io/shipped.py)."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SHIPPED = {"docs": "*.md", "configs": "*.toml"}  # top-level folder → the files a wheel carries from it


class BuildWithShipped(build_py):
    def run(self) -> None:
        super().run()
        top = Path(__file__).resolve().parent
        for folder, pattern in SHIPPED.items():
            target = Path(self.build_lib) / "advgrad" / folder
            self.mkpath(str(target))
            for path in sorted((top / folder).glob(pattern)):
                self.copy_file(str(path), str(target / path.name))


setup(cmdclass={"build_py": BuildWithShipped})
