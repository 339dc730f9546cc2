"""Rewrite advgrad/cli/catalog.json from the real commands and registries (advgrad/cli/catalog.py).

Run it after changing a command's options or help, or an attack, norm, loss, method or corruption:
tests/test_cli_catalog.py fails until the catalog matches them again.

    python scripts/write_cli_catalog.py
"""

from advgrad.cli.catalog import write_catalog

if __name__ == "__main__":
    print(f"wrote {write_catalog()}")
