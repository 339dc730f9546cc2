"""Model architectures that ship with advgrad: the embedded default and what `advgrad train` builds by name."""

from advgrad.models.digits import DigitsCNN
from advgrad.models.resnet import CifarResNet

#: architectures ``advgrad train --model NAME`` builds (fresh weights unless ``--weights``)
ARCHITECTURES = {"digits-cnn": DigitsCNN, "cifar-resnet": CifarResNet}

__all__ = ["ARCHITECTURES", "CifarResNet", "DigitsCNN"]
