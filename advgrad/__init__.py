"""advgrad: adversarial examples and robustness evaluation for trained PyTorch classifiers."""

__version__ = "0.1.0"
