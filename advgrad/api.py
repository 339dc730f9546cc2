"""The Python API in a few calls: ``advgrad.attack``, ``advgrad.evaluate``, ``advgrad.load_model``,
``advgrad.load_data`` and ``advgrad.write_report``.

Each is a thin layer over the library the command line uses (:mod:`advgrad.evaluation.generate`,
:mod:`advgrad.evaluation.sweep`, :mod:`advgrad.io`, :mod:`advgrad.report`), so the same call gives the same
numbers as the same ``advgrad`` command: ``advgrad.attack`` attacks a batch as ``advgrad attack``
attacks its first batch, and ``advgrad.evaluate`` sweeps as ``advgrad eval`` does.

>>> import advgrad
>>> model = advgrad.load_model()                      # the embedded digits CNN
>>> x, y = advgrad.load_data(limit=64)                # 64 digits, x in [0, 1]
>>> x_adv = advgrad.attack(model, x, y, "pgd", eps=8/255)
>>> report = advgrad.evaluate(model, x, y, attacks=["fgsm", "pgd"], eps=[0, 4/255, 8/255])
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from advgrad.attacks import AttackSpec, get_attack
from advgrad.attacks.options import collect_options
from advgrad.core.eps import parse_eps
from advgrad.core.errors import AdvgradWarning, UsageError
from advgrad.core.gradient import frozen
from advgrad.core.results import RobustnessReport
from advgrad.core.targets import parse_target
from advgrad.core.threat import ThreatModel, eps_beyond_box, parse_norm
from advgrad.evaluation.eval_config import plan_certify, plan_eval
from advgrad.evaluation.generate import attack_batch
from advgrad.evaluation.run import run_sweep
from advgrad.evaluation.run_description import RunDescription
from advgrad.execution.threads import auto_threads, parse_threads, threads_for_call
from advgrad.io.data.sources import check_at_least

Eps = float | str


def _spec(method: str | AttackSpec) -> AttackSpec:
    return method if isinstance(method, AttackSpec) else get_attack(method)


def _options(params: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword parameters as ``make_params`` takes them; text is read by the field's declared
    parser where it has one (a step size may be a fraction, "2/255", as on the command line)."""
    parsers = {option.name: option.parse for option in collect_options() if option.parse is not None}
    return {
        name: parsers[name](value, name) if isinstance(value, str) and name in parsers else value
        for name, value in params.items()
    }


def _refuse_unknown(specs: Sequence[AttackSpec], options: Mapping[str, Any]) -> None:
    if not specs:  # corruptions only: no attack to take an option
        if options:
            raise TypeError(f"{', '.join(sorted(options))}: no attack in this run takes parameters")
        return
    unknown = set.intersection(*(set(spec.ignored_options(**options)) for spec in specs))
    if unknown:
        names = ", ".join(spec.name for spec in specs)
        takes = sorted({row["name"] for spec in specs for row in spec.params_type.describe()})
        raise TypeError(
            f"{', '.join(sorted(unknown))}: not a parameter of {names} (parameters: {', '.join(takes)}; "
            "advgrad.list_attacks() describes them)"
        )


def _check_batch(x: Tensor, y: Tensor) -> None:
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise TypeError(
            "x and y must be tensors: x of shape (N, C, H, W) or (N, D) with pixels in [0, 1], y of N labels"
        )
    if x.ndim < 2 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise UsageError(f"x must be (N, ...) and y (N,) with the same N, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.numel() and (not torch.isfinite(x).all() or float(x.min()) < 0 or float(x.max()) > 1):
        raise UsageError(
            "x must hold finite pixels in [0, 1]; put normalisation inside the model "
            "(advgrad.load_model(..., mean=, std=)) so that ε is in pixel units"
        )


def _warn_large_eps(norm: str, eps_values: Sequence[float], features: int | None) -> None:
    """Warn, as the command line does, when an ε is larger than the input box (``eps=8``: did you
    mean 8/255?); the call goes on."""
    message = None if features is None else eps_beyond_box(norm, list(eps_values), features)
    if message is not None:
        warnings.warn(message, AdvgradWarning, stacklevel=3)


def _threads(
    threads: int | str | None, model: nn.Module, x: Tensor | None, samples: int, batch_size: int, device: Any
) -> AbstractContextManager:
    """torch's CPU threads for the call, chosen as ``--threads`` chooses them (``"auto"``: from the CPUs
    available, the model's size and the neighbours' load; a number: as given) and put back as they were
    afterwards; ``None`` leaves torch's setting alone."""
    if threads is None:
        return nullcontext()
    requested = parse_threads(threads)
    probe = x if x is not None else torch.zeros(0)
    choice = auto_threads(requested, model, probe, samples, batch_size, torch.device(device))
    if choice.warning:
        warnings.warn(str(choice.warning), AdvgradWarning, stacklevel=3)
    return threads_for_call(choice.threads)


def _first_batch(data: Any) -> Tensor | None:
    """Inputs of the first samples, where reading them changes nothing (no data used up, no random
    state drawn): a tensor, a data source, a DataLoader over a TensorDataset; else None."""
    if isinstance(data, Tensor):
        return data
    if hasattr(data, "batches"):
        return next(iter(data.batches(1)), (None, None))[0]
    dataset = getattr(data, "dataset", None)
    if isinstance(dataset, torch.utils.data.TensorDataset):
        return dataset.tensors[0][:1]
    return None


def attack(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    method: str | AttackSpec = "pgd",
    *,
    eps: Eps,
    norm: str | int = "inf",
    target: int | str | Tensor | None = None,
    seed: int = 0,
    early_stop: bool = False,
    threads: int | str | None = "auto",
    **params: Any,
) -> Tensor:
    """Adversarial examples for a batch: ``x_adv`` with ‖x_adv − x‖ ≤ ε and x_adv in [0, 1].

    Untargeted, the attack maximises the loss J(f(x + δ), y) over ‖δ‖ ≤ ε (in ``norm``: ``"inf"``,
    ``2`` or ``1``); targeted, it minimises J(f(x + δ), t). PGD, for instance, repeats
    x ← Π_ε(x + α·sign(∇ₓJ)) from a random start in the ball.

    Args:
        model: a classifier returning logits (N, classes), taking pixels in [0, 1] (normalisation
            inside it); its mode and its parameters' ``requires_grad`` are restored afterwards.
        x: inputs (N, C, H, W) or (N, D) in [0, 1], on the model's device.
        y: labels (N,), int64.
        method: an attack's name (``advgrad.list_attacks()``): fgsm, bim, mifgsm, pgd, apgd-ce,
            apgd-dlr, apgd-t, deepfool, cw, fab, fab-t, square, strong, autoattack, autoattack-rand.
        eps: the budget ε, a number or a fraction such as ``"8/255"``.
        norm: the threat model's norm.
        target: ``None`` (untargeted), a class index for every sample, a tensor of N classes,
            ``"random"`` or ``"least-likely"``.
        seed: seeds random starts and random targets; the same seed gives the same result.
        early_stop: stop attacking a sample once it is fooled (default: the full budget).
        threads: torch's CPU threads for this call, as ``advgrad --threads``: ``"auto"`` (from the
            CPUs this process may use, the model's size and what other processes leave idle; one
            for a small model), a number, or ``None`` to keep torch's own setting. The setting in
            force before the call is restored after it.
        **params: the attack's parameters (steps, step_size, restarts, random_start, loss,
            momentum, queries, eot…; ``advgrad attacks`` lists each attack's).

    Returns:
        ``x_adv``, of the shape, dtype and device of ``x``. A sample whose label is its target is
        returned unchanged. The same as ``advgrad attack --out`` for one batch with that seed.

    Example:
        >>> x_adv = advgrad.attack(model, x, y, "pgd", eps=8/255, steps=40)
        >>> (model(x_adv).argmax(1) != y).float().mean()    # success rate
    """
    spec = _spec(method)
    _check_batch(x, y)
    threat = ThreatModel(parse_norm(norm), parse_eps(eps))
    spec.check_norm(threat.norm)
    options = _options(params)
    _refuse_unknown([spec], options)
    if isinstance(target, Tensor):
        if target.shape != y.shape:
            raise UsageError(
                f"target must hold one class per sample, shape {tuple(y.shape)}, got {tuple(target.shape)}"
            )
    else:
        target = parse_target(target)
    _warn_large_eps(threat.norm, [threat.eps], x[0].numel() if x.shape[0] else None)
    with _threads(threads, model, x, x.shape[0], x.shape[0], x.device), frozen(model):
        x_adv, _, _ = attack_batch(
            model,
            x,
            y.to(x.device),
            spec,
            spec.make_params(**options),
            threat,
            target=target,
            seed=seed,
            early_stop=early_stop,
        )
    return x_adv


def _batches(data: Any, y: Tensor | None, batch_size: int) -> Iterable[tuple[Tensor, Tensor]]:
    check_at_least(batch_size=(batch_size, 1))
    if isinstance(data, Tensor):
        if y is None:
            raise TypeError("evaluate(model, x, y): give the labels y with a tensor of inputs")
        _check_batch(data, y)
        return zip(data.split(batch_size), y.split(batch_size), strict=True)
    if y is not None:
        raise TypeError("y is given with the inputs tensor only; batches and data sources carry their labels")
    if hasattr(data, "batches"):  # a DataSource (advgrad.io.data.load_data.load_data)
        return data.batches(batch_size)
    return data  # an iterable of (x, y) batches, e.g. a torch DataLoader


def _device(model: nn.Module, data: Any) -> torch.device:
    if isinstance(data, Tensor):
        return data.device
    first = next(iter(model.parameters()), None)
    return first.device if first is not None else torch.device("cpu")


def _described(report: RobustnessReport, model: nn.Module, data: Any) -> RobustnessReport:
    """``report`` with what the caller passed (a model and data in Python)."""
    report.model = {"source": "python", "description": type(model).__name__}
    shape = "×".join(str(s) for s in data.shape[1:]) if isinstance(data, Tensor) else None
    report.data = {"source": "python", "description": f"tensors of {shape}" if shape else type(data).__name__}
    return report


def evaluate(
    model: nn.Module,
    data: Tensor | Iterable[tuple[Tensor, Tensor]] | Any,
    y: Tensor | None = None,
    *,
    attacks: str | Sequence[str | AttackSpec] = ("fgsm", "pgd"),
    eps: Eps | Sequence[Eps] | None = None,
    norm: str | int = "inf",
    target: int | str | None = None,
    seed: int = 0,
    batch_size: int = 256,
    early_stop: bool = True,
    device: torch.device | str | None = None,
    certify: str | None = None,
    corruptions: str | Sequence[str] | None = None,
    timeout: float | None = None,
    budget: float | None = None,
    records: str | os.PathLike | None = None,
    save_adversarial: str | os.PathLike | None = None,
    binarization: bool | None = None,
    threads: int | str | None = "auto",
    **params: Any,
) -> RobustnessReport:
    """The robustness curve: clean accuracy and accuracy under each attack at each ε, with sanity checks.

    For every ε the accuracy is the share of samples still classified correctly by the strongest
    result the attack found within ‖δ‖ ≤ ε: an upper bound on the true robust accuracy. Each attack
    runs over the ε values in increasing order on the samples still correct; every counted
    adversarial example is re-checked (a fresh forward pass, inside the ball and the box).

    Args:
        model: a classifier returning logits, taking pixels in [0, 1].
        data: inputs ``x`` (N, ...) with ``y``; or an iterable of ``(x, y)`` batches such as a
            ``torch.utils.data.DataLoader``; or a data source from :func:`advgrad.io.data.load_data.load_data`.
        y: labels (N,) when ``data`` is a tensor.
        attacks: attack names, a list or ``"fgsm,pgd"``.
        eps: the ε values (numbers or fractions such as ``"8/255"``), a list or one value; default:
            0, 0.02, 0.05, 0.1, 0.2, 0.3 for L∞ (0 … 2 for L2, 0 … 12 for L1).
        norm: ``"inf"``, ``2`` or ``1``.
        target: ``None``, a class index, ``"random"`` or ``"least-likely"``.
        seed: seeds every random choice per (batch, attack, ε); same seed, same report.
        batch_size: samples per batch when ``data`` is a tensor or a data source.
        early_stop: a sample leaves an attack once fooled (the result is the same; it saves time).
        device: where to run; default: the device of ``x`` (else of the model's parameters).
        certify: ``"ibp"``, ``"crown"``, ``"crown-ibp"``, ``"alpha-crown"`` or ``"bab"``: also certify
            each sample (a curve of kind ``certified``, a lower bound beside the attacks' upper bounds;
            a sample certified yet fooled raises :class:`~advgrad.core.errors.InternalError`). ``"bab"``
            also counts the samples it falsified (an upper bound), within ``timeout`` seconds per
            sample and a ``budget`` of seconds for the run. See :func:`certify`.
        corruptions: ``"all"`` or names of common corruptions (Hendrycks & Dietterich 2019; see
            :func:`advgrad.corruptions.list_corruptions`): accuracy under each at severities 1 to 5 and
            their mean, in ``report.corruptions``. With corruptions, ``attacks`` may be empty (``[]``).
        records: a ``.jsonl``, ``.csv`` or ``.parquet`` file for one row per sample (docs/records.md):
            every accuracy of the report is a sum of its rows.
        save_adversarial: a folder for every counted adversarial example and the clean inputs, which
            ``advgrad rescore`` re-runs the model on.
        binarization: run the binarization test (Zimmermann et al. 2022) and its check: True, False,
            or None (by default with an ensemble attack, when it costs at most a tenth of the run).
        threads: torch's CPU threads for this call, as in :func:`attack` (default ``"auto"``, as the
            command line; restored afterwards; ``None`` keeps torch's setting).
        **params: attack parameters (steps, restarts, step_size, queries…); each attack takes those
            it has, and one that no chosen attack takes is an error.

    Returns:
        A :class:`~advgrad.core.results.RobustnessReport`: ``report.attacks["pgd"].points[j].accuracy`` at
        ``report.eps[j]``, ``report.clean_accuracy``, ``report.checks``; ``report.to_dict()`` is the
        JSON of ``advgrad eval --json`` and :func:`advgrad.write_report` writes any of its formats.

    Example:
        >>> report = advgrad.evaluate(model, x, y, attacks=["fgsm", "pgd"], eps=[0, 2/255, 4/255, 8/255])
        >>> [p.accuracy for p in report.attacks["pgd"].points]
    """
    names = attacks.split(",") if isinstance(attacks, str) else list(attacks)
    specs: list[AttackSpec] = []
    for name in names:
        spec = _spec(name.strip() if isinstance(name, str) else name)
        if spec not in specs:
            specs.append(spec)
    options = _options(params)
    _refuse_unknown(specs, options)
    chosen, config = plan_eval(
        specs,
        options,
        eps=eps,
        norm=norm,
        target=target,
        seed=seed,
        early_stop=early_stop,
        certify=certify,
        corruptions=corruptions,
        bab={"timeout": timeout, "budget": budget},
    )
    space = getattr(data, "space", None)
    if space is not None:  # a table's source: the model gets raw features, the attacks the unit box
        from advgrad.io.model.features import FeatureScaled

        model = FeatureScaled(model, space).to(_device(model, data)).eval()
        config.fixed = space.fixed
    config.keep_adversarial = save_adversarial is not None
    config.binarization = binarization
    report = _run(
        model,
        data,
        y,
        batch_size,
        RunDescription(chosen, config),
        device,
        threads,
        records=None if records is None else Path(records),
        adversarial=None if save_adversarial is None else Path(save_adversarial),
    )
    return _described(report, model, data)


def _run(
    model: nn.Module,
    data: Any,
    y: Tensor | None,
    batch_size: int,
    run: RunDescription,
    device: torch.device | str | None,
    threads: int | str | None,
    **outputs: Any,
) -> RobustnessReport:
    """``run`` over the data as :func:`evaluate` and :func:`certify` take it, on ``device`` (default: the
    data's or the model's), with ``threads`` for the call; a warning when an ε exceeds the input box."""
    device = device if device is not None else _device(model, data)
    first = _first_batch(data)
    _warn_large_eps(run.config.norm, run.config.eps, first[0].numel() if first is not None and first.shape[0] else None)
    batch = getattr(data, "batch_size", None) or batch_size  # a DataLoader's own batch size
    with _threads(threads, model, first, data.shape[0] if isinstance(data, Tensor) else batch, batch, device):
        return run_sweep(model, _batches(data, y, batch_size), run, device=device, **outputs)


def load_model(
    spec: str | os.PathLike | None = None,
    *,
    weights: str | os.PathLike | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    model_args: Mapping[str, Any] | None = None,
    device: torch.device | str = "cpu",
    unsafe_pickle: bool = False,
    bpda: Sequence[str] | None = None,
) -> nn.Module:
    """A model in eval mode that takes pixels in [0, 1], as ``advgrad --model`` loads it.

    ``spec``: ``None`` (the embedded digits CNN), an ExportedProgram ``.pt2``, ONNX or TorchScript file,
    ``"torchvision:NAME"``, ``"timm:NAME"`` or ``"package.module:callable"`` (with ``weights``, a
    state-dict file, and ``model_args``, keyword arguments for the callable), or ``"hf:DIR"`` (a
    Hugging Face ``save_pretrained`` folder). An ONNX model is converted to torch by onnx2torch; its
    check against onnxruntime needs a batch and runs in ``advgrad info``/``eval``/``attack``. ``mean``/``std`` put
    (x − mean) / std in front of the model so that ε is in pixel units. Files are read without
    running code from them unless ``unsafe_pickle=True``. ``bpda``: ``--bpda`` values
    (``"NAME"`` or ``"NAME=package.module:callable"``), submodules of a model built in code that run
    forward as they are and differentiate as the identity or the stand-in (BPDA, Athalye et al.
    2018). Loading warnings become Python warnings.

    Example:
        >>> model = advgrad.load_model("torchvision:resnet18", weights="resnet18.pth",
        ...                            mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    """
    from advgrad.execution.device import resolve_device
    from advgrad.io.model.load_model import ModelOptions
    from advgrad.io.model.load_model import load_model as _load

    options = ModelOptions(
        device=resolve_device(str(device)),
        weights=None if weights is None else str(weights),
        model_args=dict(model_args or {}),
        unsafe_pickle=unsafe_pickle,
        mean=None if mean is None else tuple(float(m) for m in mean),
        std=None if std is None else tuple(float(s) for s in std),
        bpda=tuple(bpda or ()),
    )
    loaded = _load(None if spec is None else str(spec), options)
    for message in loaded.warnings:
        warnings.warn(message, AdvgradWarning, stacklevel=2)
    return loaded.module


def load_data(
    spec: str | os.PathLike | None = None,
    *,
    split: str = "test",
    limit: int | None = None,
    shuffle: bool = False,
    seed: int = 0,
    root: str | os.PathLike | None = None,
    download: bool = False,
    image_size: int | None = None,
) -> tuple[Tensor, Tensor]:
    """``(x, y)``: inputs (N, C, H, W) as float32 in [0, 1] and labels (N,) int64, as ``--data`` reads them.

    ``spec``: ``None`` (the embedded digits, 450 test samples of 1×8×8), a ``.pt``/``.npz``/
    ``.safetensors`` file holding x and y, an image folder (one sub-folder per class), or ``mnist``,
    ``fashion-mnist``, ``cifar10``, ``cifar100``, ``svhn`` (from ``root``; ``download=True`` fetches
    them). ``limit`` keeps the first N samples (of a ``seed``-ed shuffle with ``shuffle=True``).
    For data too large to hold at once, :func:`advgrad.io.data.load_data.load_data` gives a source to pass
    to :func:`advgrad.evaluate` as it is.

    Example:
        >>> x, y = advgrad.load_data("cifar10", root="data", limit=500)
    """
    from advgrad.io.data.load_data import DataOptions
    from advgrad.io.data.load_data import load_data as _load

    source = _load(
        None if spec is None else str(spec),
        DataOptions(split=split, root=None if root is None else str(root), download=download, image_size=image_size),
    )
    for message in source.warnings:
        warnings.warn(message, AdvgradWarning, stacklevel=2)
    if getattr(source, "space", None) is not None:
        raise UsageError(
            f"{spec} is a table: pass advgrad.io.data.load_data.load_data({str(spec)!r}) to advgrad.evaluate as it is, "
            "which puts the per-feature scaling in front of the model"
        )
    return source.fetch(source.select(limit=limit, shuffle=shuffle, seed=seed))


def write_report(report: RobustnessReport, path: str | os.PathLike, *, format: str | None = None) -> Path:
    """Write ``report`` to ``path`` in the format its suffix names (or ``format``): ``json``, ``csv``,
    ``md`` (Markdown), ``xml`` (JUnit), ``html`` (one self-contained page) or a picture of the plot
    (``png``, ``pdf``, ``svg``, ``eps``, ``jpg``), as
    ``advgrad eval --json/--csv/--markdown/--junit/--html/--plot`` do; written atomically. Returns the path.

    Example:
        >>> advgrad.write_report(report, "report.md")
    """
    from advgrad.io.files import PICTURE_FORMATS, write_json, write_text
    from advgrad.report.csvfile import render_csv
    from advgrad.report.html import render_html
    from advgrad.report.junit import render_junit
    from advgrad.report.markdown import render_markdown
    from advgrad.report.plot import plot_report

    path = Path(path)
    kind = (format or path.suffix.lstrip(".")).lower()
    text_renderers = {
        "csv": render_csv,
        "md": render_markdown,
        "markdown": render_markdown,
        "xml": render_junit,
        "junit": render_junit,
        "html": render_html,
        "htm": render_html,
    }
    if kind == "json":
        write_json(path, report.to_dict())
    elif kind in text_renderers:
        write_text(path, text_renderers[kind](report))
    elif f".{kind}" in PICTURE_FORMATS:
        plot_report(report, path, format=PICTURE_FORMATS[f".{kind}"])
    else:
        raise UsageError(
            f"{path}: say which format to write (suffix or format=): json, csv, md, xml, html, or a picture: png, pdf, "
            "svg, eps, jpg"
        )
    return path


def certify(
    model: nn.Module,
    data: Tensor | Iterable[tuple[Tensor, Tensor]] | Any,
    y: Tensor | None = None,
    *,
    method: str = "crown",
    eps: Eps | Sequence[Eps] | None = None,
    norm: str | int | None = None,
    seed: int = 0,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    sigma: float = 0.25,
    samples: int = 1000,
    n0: int = 100,
    alpha: float = 0.001,
    timeout: float | None = None,
    budget: float | None = None,
    max_domains: int | None = None,
    records: str | os.PathLike | None = None,
    threads: int | str | None = "auto",
) -> RobustnessReport:
    """Certified accuracy per ε, as ``advgrad certify`` computes it: one curve of kind ``certified``.

    With ``method`` ``"ibp"``, ``"crown"`` or ``"crown-ibp"`` a sample counts at ε when it is
    classified correctly and the lower bound of z_y − z_j over the ε-ball ∩ [0, 1] is positive for
    every j ≠ y: a lower bound on the true robust accuracy (norm ``"inf"`` or ``2``). With
    ``"smoothing"`` (randomized smoothing, Cohen et al. 2019; L2 only, the default norm then) a
    sample counts at radius ε when the smoothed classifier (the model's vote under N(0, σ²I) noise,
    ``sigma``) returns its label with a certified radius ≥ ε, each certificate with confidence
    1 − ``alpha`` from ``n0`` + ``samples`` noisy copies; ``curve.abstained`` counts the samples it
    abstained on. Noise is seeded by ``seed`` and the batch's index. With ``"alpha-crown"`` the
    bounds' relaxations are optimised (α-CROWN). With ``"bab"`` (branch and bound) each sample gets
    a verdict: verified (counted), falsified (a counterexample in the ball ∩ box that a forward
    pass confirmed; ``point.falsified`` counts them, ``report.counterexamples`` holds them) or
    unknown, when its ``timeout`` (seconds per sample), the run's ``budget`` (seconds) or
    ``max_domains`` (sub-domains per sample; default 100,000) runs out. ``records``: one row per
    sample with its certified verdict at each ε (docs/records.md). Arguments otherwise (``threads``
    too) as in :func:`evaluate`.

    Example:
        >>> report = advgrad.certify(model, x, y, method="crown", eps=[0, 0.01, 0.02])
        >>> [p.accuracy for p in report.attacks["crown"].points]
    """
    smoothing = {"sigma": sigma, "n0": n0, "samples": samples, "alpha": alpha}
    bab = {"timeout": timeout, "budget": budget, "max_domains": max_domains}
    config = plan_certify(method, eps=eps, norm=norm, seed=seed, smoothing=smoothing, bab=bab)
    report = _run(
        model,
        data,
        y,
        batch_size,
        RunDescription([], config),
        device,
        threads,
        records=None if records is None else Path(records),
    )
    return _described(report, model, data)
