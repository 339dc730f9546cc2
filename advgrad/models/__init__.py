"""Model architectures that ship with advgrad (the embedded default)."""

from advgrad.models.digits import DigitsCNN

__all__ = ["DigitsCNN"]
