"""``python -m advgrad`` runs the command line (also under torchrun)."""

from advgrad.cli import main

if __name__ == "__main__":
    main()
