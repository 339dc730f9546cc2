"""Where and how a run executes, never what it computes: the model's runtime wrappers (precision,
compile, memory format: :mod:`~advgrad.execution.runtime`), CPU threads, the device, processes under
torchrun (:mod:`~advgrad.execution.distributed`) and progress."""
