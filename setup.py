"""Build hook, beside pyproject.toml (which holds everything else): a wheel carries the
documentation, docs/*.md, as advgrad/docs/, so that `advgrad docs TOPIC` works after
`pip install`. A checkout reads docs/ itself (advgrad/shipped.py)."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithDocs(build_py):
    def run(self) -> None:
        super().run()
        docs = Path(__file__).resolve().parent / "docs"
        target = Path(self.build_lib) / "advgrad" / "docs"
        self.mkpath(str(target))
        for page in sorted(docs.glob("*.md")):
            self.copy_file(str(page), str(target / page.name))


setup(cmdclass={"build_py": BuildWithDocs})
