"""One module per command of the ``advgrad`` app; the infrastructure they share (options, console,
outputs, resuming, torchrun) lives one level up, in :mod:`advgrad.cli`."""
