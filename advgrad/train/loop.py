"""One training loop for every method: shuffled batches, the method's loss, an epoch log,
validation, an atomic checkpoint per epoch and an exact resume; DistributedDataParallel under
torchrun.

Randomness: the model's initial weights come from the caller; the order of each epoch, the
random starts of attacks and the noise come from generators derived from (seed, epoch, batch)
(:mod:`advgrad.core.seeding`), so a run resumed from the checkpoint of epoch k continues exactly as
the uninterrupted run would (on a CPU, where kernels are deterministic). The global RNG (used
by dropout) is saved in the checkpoint and restored.

Under torchrun every rank takes an equal slice of each global batch of ``batch_size`` samples
(the last ranks one sample fewer where it does not divide); each rank's loss is its sum of
per-sample losses times ``world_size / batch`` so that DistributedDataParallel's gradient average
is the gradient of the global batch's mean loss: the weights follow those of one process.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor, nn

from advgrad.attacks import FGSMParams, PGDParams, get_attack, run_attack
from advgrad.core.errors import UsageError
from advgrad.core.seeding import generator_for
from advgrad.core.threat import ThreatModel
from advgrad.execution.runtime import PRECISIONS
from advgrad.io.data.sources import DataSource
from advgrad.io.files import atomic_path
from advgrad.train.methods import LOSSES, Step
from advgrad.train.train_config import CYCLIC_PEAK, FAST_METHODS, TrainConfig

CHECKPOINT_FORMAT = "advgrad.train-checkpoint"
#: PGD steps of the per-epoch validation under attack
VALIDATION_STEPS = 10


def read_checkpoint(path: str | Path) -> dict | str:
    """The contents of the training checkpoint ``path``, or why it is not one (a short reason)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 -- a truncated or foreign file: one line
        return f"{path} is not a readable training checkpoint ({type(exc).__name__})"
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        return f"{path} is not an advgrad training checkpoint"
    return state


def checkpoint_differences(state: dict, identity: dict, config: TrainConfig) -> list[str]:
    """What sets the run of ``identity`` and ``config`` apart from the one that wrote the checkpoint
    ``state``: the names of the identity entries and configuration fields that differ (none: the
    same run)."""
    differ = []
    for key, mine in (("identity", identity), ("config", config.to_dict())):
        theirs = state.get(key) if isinstance(state.get(key), dict) else {}
        differ += [k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k)]
    return sorted(differ)


def differ_text(names: list[str]) -> str:
    """``lr differs``, ``epochs, lr differ``."""
    return f"{', '.join(names)} differ{'s' if len(names) == 1 else ''}"


@dataclass
class EpochLog:
    """One epoch: the mean training loss and the accuracy of the logits the loss was computed on
    (adversarial ones for pgd, noisy for noise), and on the held-out validation samples the clean
    accuracy, the accuracy under PGD-10 at ``eps`` (None when ε = 0), for certified training the
    certified accuracy at ``eps`` by the training's bound and, for single-step training, the
    accuracy under FGSM at ``eps`` (one step of ε from x: what the guard compares with PGD-10)."""

    epoch: int
    lr: float
    eps: float
    loss: float
    train_accuracy: float
    val_accuracy: float | None
    val_robust_accuracy: float | None
    val_certified_accuracy: float | None
    seconds: float
    samples: int
    val_fgsm_accuracy: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def split_indices(selection: Tensor, val_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """(train, validation) indices: a seeded random ``val_fraction`` of ``selection`` held out."""
    n = len(selection)
    n_val = min(n - 1, math.ceil(val_fraction * n)) if val_fraction > 0 else 0
    order = torch.randperm(n, generator=generator_for(torch.device("cpu"), seed, "validation-split"))
    return selection[order[n_val:]].sort().values, selection[order[:n_val]].sort().values


def make_optimizer(module: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in module.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def cyclic_factor(update: int, updates: int) -> float:
    """The one-cycle schedule's share of the peak rate at ``update`` (0-based) of ``updates``: linear
    from 0 to 1 over the first ``CYCLIC_PEAK`` of the updates, then linear to 0 at the end."""
    rise = CYCLIC_PEAK * updates
    return update / rise if update < rise else max(0.0, (updates - update) / (updates - rise))


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, batches: int):
    """The learning-rate schedule, stepped once per epoch, or per batch for ``cyclic``
    (``batches`` per epoch)."""
    if config.schedule == "cyclic":
        updates = config.epochs * batches
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: cyclic_factor(t, updates))
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.epochs)
    if config.schedule == "step":
        milestones = sorted({max(1, round(config.epochs * 0.5)), max(1, round(config.epochs * 0.75))})
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.1)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


class WeightAverage:
    """An exponential moving average of the weights (and a copy of the buffers), the model the run
    validates and writes: w̄ ← d·w̄ + (1 − d)·w after every step, d = min(``decay``, (1 + t)/(10 + t))
    at step t so that the first steps do not keep the initial weights (weight averaging as in Gowal
    et al. 2020, "Uncovering the limits of adversarial training")."""

    def __init__(self, module: nn.Module, decay: float):
        self.decay, self.steps = decay, 0
        self.values = {k: v.detach().clone() for k, v in module.state_dict().items()}

    def update(self, module: nn.Module) -> None:
        d = min(self.decay, (1 + self.steps) / (10 + self.steps))
        self.steps += 1
        state = module.state_dict()
        floats = [k for k, v in self.values.items() if v.is_floating_point()]
        torch._foreach_lerp_([self.values[k] for k in floats], [state[k].detach() for k in floats], 1 - d)
        for k, v in self.values.items():
            if not v.is_floating_point():
                v.copy_(state[k])

    @contextmanager
    def swapped(self, module: nn.Module):
        """``module`` holds the averaged weights inside the block, its own after it."""
        own = {k: v.detach().clone() for k, v in module.state_dict().items()}
        module.load_state_dict(self.values)
        try:
            yield
        finally:
            module.load_state_dict(own)


#: a drop of the validation accuracy under PGD this far below its best epoch's is a collapse
COLLAPSE_DROP = 0.2
#: validation accuracy under FGSM this far above that under PGD-10 is a collapse (docs/train.md: the
#: largest gap measured in healthy single-step and PGD runs on the digits was 0.30)
COLLAPSE_GAP = 0.4


class CollapseGuard:
    """Catastrophic overfitting (Wong, Rice & Kolter 2020): single-step training suddenly stops
    being robust to multi-step attacks while it still fits its own. After each epoch the guard
    reads the validation accuracy under PGD-10 and under FGSM (a held-out set:
    :meth:`Trainer.validate`) and keeps the weights of the best epoch by PGD-10. A collapse is
    either rule: the PGD-10 accuracy falls more than ``COLLAPSE_DROP`` below the best, or, after the
    ε warm-up, the FGSM accuracy exceeds the PGD-10 accuracy by more than ``COLLAPSE_GAP`` (a model
    robust to its own single step and not to PGD: the hallmark of the collapse, also where PGD-10
    never rose). At a collapse the guard puts the best weights back and says so in one line (the
    run stops)."""

    def __init__(self):
        self.best: tuple[float, int, dict] | None = None

    def watch(self, entry: EpochLog, module: nn.Module, config: TrainConfig) -> str | None:
        robust = entry.val_robust_accuracy
        if robust is None:
            return None
        gap = self._gap(entry, config)
        if gap is None and (self.best is None or robust >= self.best[0]):
            state = {k: v.detach().clone() for k, v in module.state_dict().items()}
            self.best = (robust, entry.epoch, state)
            return None
        if gap is None and robust >= self.best[0] - COLLAPSE_DROP:
            return None
        what = (
            f"fell from {100 * self.best[0]:.1f}% (epoch {self.best[1]}) to {100 * robust:.1f}%"
            if gap is None
            else f"is {100 * robust:.1f}% while under FGSM (the single step) it is {100 * entry.val_fgsm_accuracy:.1f}%, "
            f"more than {100 * COLLAPSE_GAP:.0f} points apart"
        )
        return (
            f"catastrophic overfitting in epoch {entry.epoch}: the validation accuracy under PGD-10 at ε = "
            f"{config.eps.label} {what}; the run stopped and {self._roll_back(module)}. Train with --method n-fgsm "
            "or gradalign (or pgd), or a smaller --eps or --step-size"
        )

    @staticmethod
    def _gap(entry: EpochLog, config: TrainConfig) -> float | None:
        """FGSM minus PGD-10 validation accuracy where it exceeds ``COLLAPSE_GAP`` after the warm-up, else None."""
        if entry.val_fgsm_accuracy is None or entry.epoch <= config.warmup_epochs:
            return None
        gap = entry.val_fgsm_accuracy - entry.val_robust_accuracy
        return gap if gap > COLLAPSE_GAP else None

    def _roll_back(self, module: nn.Module) -> str:
        if self.best is None:
            return "kept the last weights (no earlier epoch to go back to)"
        module.load_state_dict(self.best[2])
        return f"kept the weights of epoch {self.best[1]}"


@dataclass
class Distributed:
    """This process's rank among ``world_size`` under torchrun (a process group is joined)."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


BatchHook = Callable[[int, int, int, float, float], None]  # epoch, batch, batches, mean loss, accuracy


class Trainer:
    """Trains ``module`` in place on ``source[train_indices]``; see the module docstring."""

    def __init__(
        self,
        module: nn.Module,
        source: DataSource,
        config: TrainConfig,
        *,
        device: torch.device,
        train_indices: Tensor,
        val_indices: Tensor,
        identity: dict | None = None,
        dist_info: Distributed | None = None,
    ):
        if len(train_indices) == 0:
            raise UsageError("no training samples are left after the validation split; give more data")
        config = config if config.resolved else config.resolve(len(train_indices))
        self.module = module.to(device)
        self.source, self.config, self.device = source, config, device
        self.train_indices, self.val_indices = train_indices, val_indices
        self.identity = identity or {}
        self.dist = dist_info or Distributed()
        self.optimizer = make_optimizer(module, config)
        self.scheduler = make_scheduler(self.optimizer, config, math.ceil(len(train_indices) / config.batch_size))
        self.scaler = torch.amp.GradScaler(device.type) if config.precision == "fp16" else None
        self.log: list[EpochLog] = []
        self.epoch = 0  # epochs finished
        self._forward: Callable[[Tensor], Tensor] = module
        self._bounds = None
        self.collapse: str | None = None  # the guard's line when it stopped the run
        self.average = WeightAverage(module, config.ema) if config.ema else None

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "version": 1,
            "identity": self.identity,
            "config": self.config.to_dict(),
            "epoch": self.epoch,
            "model": {k: v.detach().cpu().clone() for k, v in self.module.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": None if self.scaler is None else self.scaler.state_dict(),
            "rng": torch.get_rng_state(),
            "log": [e.to_dict() for e in self.log],
            "average": None if self.average is None else {"steps": self.average.steps, "values": self.average.values},
        }

    def save(self, path: str | Path) -> None:
        """Write the checkpoint atomically: an interruption leaves the previous one whole."""
        with atomic_path(path) as tmp:
            torch.save(self.state(), tmp)

    def load(self, path: str | Path) -> None:
        """Continue from a checkpoint written by the same run (same identity and configuration)."""
        state = read_checkpoint(path)
        if isinstance(state, str):
            raise UsageError(state)
        differ = checkpoint_differences(state, self.identity, self.config)
        if differ:
            raise UsageError(f"the checkpoint {path} is of another run ({differ_text(differ)})")
        self.restore(state)

    def restore(self, state: dict) -> None:
        """Take up the run where the checkpoint ``state`` of this run (:func:`checkpoint_differences`
        finds nothing) left it."""
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"])
        self.log = [EpochLog(**e) for e in state["log"]]
        self.epoch = int(state["epoch"])
        if self.average is not None and state.get("average"):
            self.average.steps = int(state["average"]["steps"])
            self.average.values = {k: v.to(self.device) for k, v in state["average"]["values"].items()}

    # ------------------------------------------------------------------ the loop
    def _autocast(self):
        dtype = PRECISIONS[self.config.precision]
        return nullcontext() if dtype is None else torch.autocast(self.device.type, dtype=dtype)

    def _prepare(self) -> None:
        if self.dist.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device] if self.device.type == "cuda" else None
            self._forward = DistributedDataParallel(self.module, device_ids=ids)
        if self.config.certified:
            from advgrad.bounds.trainable import TrainableBounds

            x, _ = self.source.fetch(self.train_indices[:1])
            x = x.to(self.device)
            if self.config.method == "staps":  # the bounds of the feature extractor's output
                from advgrad.train.staps import LatentBounds, checked_split

                self._bounds = LatentBounds(self.module, checked_split(self.module, x)[0], x)
            else:
                self._bounds = TrainableBounds(self.module, x)

    def run(
        self,
        *,
        checkpoint: str | Path | None = None,
        on_batch: BatchHook | None = None,
        on_epoch: Callable[[EpochLog], None] | None = None,
    ) -> list[EpochLog]:
        """Train from ``self.epoch`` to ``config.epochs``; after each epoch validate, append to
        the log, call ``on_epoch`` and (rank 0) save ``checkpoint``."""
        self._prepare()
        watched = self.config.guard and self.config.method in FAST_METHODS and self.dist.world_size == 1
        guard = CollapseGuard() if watched else None
        while self.epoch < self.config.epochs and self.collapse is None:
            entry = self._epoch(self.epoch, on_batch)
            self.log.append(entry)
            self.epoch += 1
            if guard is not None:
                self.collapse = guard.watch(entry, self.module, self.config)
            if self.dist.is_main:
                if checkpoint is not None:
                    self.save(checkpoint)
                if on_epoch is not None:
                    on_epoch(entry)
            if self.dist.world_size > 1:
                dist.barrier()
        if self.average is not None and self.collapse is None:
            self.module.load_state_dict(self.average.values)  # the run's result is the averaged model
        return self.log

    def _epoch(self, epoch: int, on_batch: BatchHook | None) -> EpochLog:
        c, cpu = self.config, torch.device("cpu")
        start = time.perf_counter()
        lr = self.optimizer.param_groups[0]["lr"]
        order = self.train_indices[
            torch.randperm(len(self.train_indices), generator=generator_for(cpu, c.seed, "order", epoch))
        ]
        batches = order.split(c.batch_size)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        seen = 0
        eps = 0.0
        self.module.train()
        for b, idx in enumerate(batches):
            mine = idx.tensor_split(self.dist.world_size)[self.dist.rank]
            x, y = self.source.fetch(mine)
            x, y = x.to(self.device), y.to(self.device)
            ramp = c.ramp(epoch, b, len(batches))
            eps = c.train_eps * ramp
            step = Step(
                forward=self._forward,
                module=self.module,
                x=x,
                y=y,
                config=c,
                eps=eps,
                kappa=1 - (1 - c.kappa) * ramp,
                crown_weight=1 - ramp,
                generator=generator_for(self.device, c.seed, "train", epoch, b, self.dist.rank),
                bounds=self._bounds,
            )
            with self._autocast():
                per_sample, logits = LOSSES[c.method](step)
            loss = per_sample.sum() * (self.dist.world_size / len(idx))
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                loss.backward()
                self.optimizer.step()
            if self.average is not None:
                self.average.update(self.module)
            if c.schedule == "cyclic":
                self.scheduler.step()
            loss_sum += per_sample.detach().double().sum()
            correct += (logits.detach().argmax(dim=1) == y).sum()
            seen += len(mine)
            if on_batch is not None and self.dist.is_main:
                on_batch(epoch, b + 1, len(batches), float(loss_sum) / max(seen, 1), int(correct) / max(seen, 1))
        if c.schedule != "cyclic":
            self.scheduler.step()
        totals = torch.stack(
            [loss_sum, correct.double(), torch.tensor(float(seen), dtype=torch.float64, device=self.device)]
        )
        if self.dist.world_size > 1:
            dist.all_reduce(totals)
        n = int(totals[2])
        if not math.isfinite(float(totals[0])):
            raise UsageError(
                f"training diverged: the loss is not finite in epoch {epoch + 1}; lower `lr` (or check the data)",
                params="lr",
            )
        with self.average.swapped(self.module) if self.average is not None else nullcontext():
            val = self.validate(epoch) if self.dist.is_main else (None, None, None, None)
        return EpochLog(
            epoch=epoch + 1,
            lr=lr,
            eps=eps,
            loss=float(totals[0]) / max(n, 1),
            train_accuracy=float(totals[1]) / max(n, 1),
            val_accuracy=val[0],
            val_robust_accuracy=val[1],
            val_certified_accuracy=val[2],
            val_fgsm_accuracy=val[3],
            seconds=time.perf_counter() - start,
            samples=n,
        )

    @torch.no_grad()
    def validate(self, epoch: int) -> tuple[float | None, float | None, float | None, float | None]:
        """(clean, PGD-10 at ε, certified at ε, FGSM at ε) accuracy on the validation samples; None
        where it does not apply (no validation samples, ε = 0, not certified or not single-step training)."""
        if len(self.val_indices) == 0:
            return None, None, None, None
        c = self.config
        modes = {m: m.training for m in self.module.modules()}
        self.module.eval()
        attacks = {"pgd": PGDParams(steps=VALIDATION_STEPS)} if c.eps > 0 else {}
        if c.eps > 0 and c.method in FAST_METHODS:
            attacks["fgsm"] = FGSMParams()  # one step of ε from x: what the guard compares with PGD-10
        clean = certified_n = 0
        correct = dict.fromkeys(attacks, 0)
        try:
            for b, idx in enumerate(self.val_indices.split(c.batch_size)):
                x, y = self.source.fetch(idx)
                x, y = x.to(self.device), y.to(self.device)
                clean += int((self.module(x).argmax(1) == y).sum())
                for name, params in attacks.items():
                    correct[name] += self._correct_under(name, params, x, y, b)
                if c.certified:
                    from advgrad.bounds import certified

                    ok = certified(self.module, x, y, [c.eps], norm=c.norm, method=c.bound)
                    certified_n += int(ok.sum())
        finally:
            for m, mode in modes.items():
                m.training = mode
        n = len(self.val_indices)
        share = {name: k / n for name, k in correct.items()}
        return clean / n, share.get("pgd"), (certified_n / n if c.certified else None), share.get("fgsm")

    def _correct_under(self, attack: str, params, x: Tensor, y: Tensor, batch: int) -> int:
        """How many of (x, y) the model still classifies right under ``attack`` at ε (seeded per batch)."""
        c = self.config
        with torch.enable_grad():
            x_adv = run_attack(
                get_attack(attack),
                self.module,
                x,
                y,
                threat=ThreatModel(c.norm, c.eps),
                params=params,
                generator=generator_for(self.device, c.seed, "validation", batch),
            )
        return int((self.module(x_adv).argmax(1) == y).sum())
