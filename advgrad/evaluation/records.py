"""Per-sample records of an evaluation: the rows every number of a report is a sum of.

Each batch of the sweep fills a :class:`BatchRecords`: per sample its index in the run, label,
clean prediction and clean margin, and for each attack and ε the point the sweep counted there
(:class:`AttackRecords`): whether the sample was fooled, the prediction there, the perturbation
norm, the final margin z_y − max_{k≠y} z_k and the model passes the attack spent on the sample at
that ε; the certified verdicts where the run certified. The records travel with the batch's tally
(:class:`advgrad.evaluation.tally.BatchTally`), so they are saved in a resume state and exchanged
between the processes of a distributed run, and the rows come out in batch order whichever way the
run went. ``robust`` at ε is the number of rows that are clean-correct and not fooled there.

What the columns of one attack at one ε describe (the point the sweep counted for the sample):

* a sample misclassified cleanly is never attacked: ``fooled`` is None, the point is x itself;
* at ε = 0, and for a sample whose label is its target, the point is x itself (not fooled);
* a sample fooled at a smaller ε keeps that adversarial example (it lies in every larger ball) and
  spends no passes at the larger ε;
* a bounded attack's sample attacked at ε: the point it returned, confirmed by a forward pass;
* a minimal attack searches once for every ε: its passes are recorded at the first ε, and at an ε
  beyond the sample's minimal example the point is x itself (the attack found nothing within ε).

``passes`` is the attack's declared cost per sample (:meth:`advgrad.attacks.base.AttackParams.
passes_per_sample`) for each run the sample entered: exact without early stop, an upper bound with
it (a sample may leave its run as soon as it is fooled).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from advgrad.core.losses import finite_rows, margin
from advgrad.core.results import float32_decimal


def clean_margin(logits: Tensor, y: Tensor) -> Tensor:
    """z_y − max_{k≠y} z_k per row (> 0 when classified correctly), float64; NaN for non-finite rows."""
    value = -margin(logits.detach().double(), y)
    return torch.where(finite_rows(logits), value, torch.full_like(value, float("nan")))


@dataclass
class AttackRecords:
    """One attack on one batch: per ε (rows) and sample (columns) the point the sweep counted;
    ``fooled_at``: the first ε index at which the sample counts as fooled, −1 if never.
    ``x_adv`` (kept on request): the counted adversarial example of each sample ``adv_index``
    (indices into the batch, increasing once :meth:`finish` ran)."""

    fooled_at: Tensor
    prediction: Tensor
    norm: Tensor
    margin: Tensor
    passes: Tensor
    x_adv: Tensor | None = None
    adv_index: Tensor | None = None

    @classmethod
    def start(cls, n_eps: int, prediction: Tensor, margins: Tensor) -> AttackRecords:
        """Every point x itself: the clean ``prediction`` and ``margins``, no perturbation, no passes."""
        n = prediction.shape[0]
        return cls(
            fooled_at=torch.full((n,), -1, dtype=torch.long, device=prediction.device),
            prediction=prediction[None].repeat(n_eps, 1),
            norm=torch.zeros(n_eps, n, dtype=torch.float64, device=prediction.device),
            margin=margins[None].repeat(n_eps, 1),
            passes=torch.zeros(n_eps, n, dtype=torch.long, device=prediction.device),
        )

    def carry(self, j: int) -> None:
        """Column ``j`` starts as column ``j − 1`` (what a sample had at the smaller ε), spending nothing."""
        for t in (self.prediction, self.norm, self.margin):
            t[j] = t[j - 1]

    def point(self, j: int, at: Tensor, prediction: Tensor, norm: Tensor, margins: Tensor) -> None:
        """The samples ``at`` were measured at ε index ``j``."""
        self.prediction[j, at] = prediction
        self.norm[j, at] = norm.double()
        self.margin[j, at] = margins

    def fooled(self, j: int, at: Tensor) -> None:
        self.fooled_at[at] = j

    def keep(self, at: Tensor, x_adv: Tensor) -> None:
        """Keep the adversarial examples of the samples ``at`` (fooled now), sorted by sample at the end."""
        rows, at = x_adv.detach().cpu(), at.cpu()
        self.x_adv = rows if self.x_adv is None else torch.cat([self.x_adv, rows])
        self.adv_index = at if self.adv_index is None else torch.cat([self.adv_index, at])

    def finish(self) -> AttackRecords:
        """On the CPU, the kept examples in sample order."""
        order = None if self.adv_index is None else self.adv_index.argsort()
        return AttackRecords(
            *(t.cpu() for t in (self.fooled_at, self.prediction, self.norm, self.margin, self.passes)),
            x_adv=None if order is None else self.x_adv[order],
            adv_index=None if order is None else self.adv_index[order],
        )


@dataclass
class BatchRecords:
    """The records of one batch (see the module docstring). ``first`` is the run's index of its first
        sample; ``clean_correct`` is the sweep's verdict (a randomized model's sample is correct only when
    every prediction is); ``certified`` (bool, ε × N) where the run certified, ``falsified`` (bool, ε × N)
    where it ran branch and bound (a counterexample was found), ``radius`` (N) where it used randomized
    smoothing; ``x`` (the clean inputs) where adversarial examples are kept."""

    first: int
    label: Tensor
    clean_prediction: Tensor
    clean_correct: Tensor
    clean_margin: Tensor
    attacks: list[AttackRecords]
    certified: Tensor | None = None
    radius: Tensor | None = None
    x: Tensor | None = None
    falsified: Tensor | None = None

    def to_state(self) -> dict[str, Any]:
        body = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        body["attacks"] = [dataclasses.asdict(a) for a in self.attacks]
        return body

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> BatchRecords:
        body = dict(data)
        return cls(**{**body, "attacks": [AttackRecords(**a) for a in body["attacks"]]})

    def rows(self, names: Sequence[str], eps_labels: Sequence[str], certify: str | None) -> Iterator[dict[str, Any]]:
        """One dict per sample, columns in a fixed order: ``index``, ``label``, ``clean_prediction``
        (None for non-finite logits), ``clean_correct``, ``clean_margin``, then per attack and ε
        ``ATTACK@EPS:fooled|prediction|norm|margin|passes``, then ``METHOD@EPS:certified`` and, for branch
        and bound, ``METHOD@EPS:verdict`` (verified, falsified or unknown; None for a misclassified sample)."""
        lists = _as_lists(self)
        for i in range(self.label.shape[0]):
            correct = lists["correct"][i]
            row: dict[str, Any] = {
                "index": self.first + i,
                "label": lists["label"][i],
                "clean_prediction": _prediction(lists["clean_prediction"][i]),
                "clean_correct": correct,
                "clean_margin": _number(lists["clean_margin"][i]),
            }
            for name, attack in zip(names, lists["attacks"], strict=True):
                for j, eps in enumerate(eps_labels):
                    key = f"{name}@{eps}:"
                    row[key + "fooled"] = (0 <= attack["fooled_at"][i] <= j) if correct else None
                    row[key + "prediction"] = _prediction(attack["prediction"][j][i])
                    row[key + "norm"] = _number(attack["norm"][j][i])
                    row[key + "margin"] = _number(attack["margin"][j][i])
                    row[key + "passes"] = attack["passes"][j][i]
            if lists["certified"] is not None and certify is not None:
                for j, eps in enumerate(eps_labels):
                    row[f"{certify}@{eps}:certified"] = lists["certified"][j][i]
                    if lists["falsified"] is not None:
                        row[f"{certify}@{eps}:verdict"] = _verdict(correct, lists, j, i)
            if lists["radius"] is not None and certify is not None:
                row[f"{certify}:radius"] = _number(lists["radius"][i])
            yield row


def _verdict(correct: bool, lists: dict[str, Any], j: int, i: int) -> str | None:
    """Branch and bound's verdict on sample ``i`` at the ``j``-th ε (None: misclassified, nothing to decide)."""
    if not correct:
        return None
    if lists["certified"][j][i]:
        return "verified"
    return "falsified" if lists["falsified"][j][i] else "unknown"


def attack_records(result: Any, norm: Tensor, passes: int, target: Tensor | None = None) -> BatchRecords:
    """The records of ``advgrad attack`` (one attack, one ε) from its
    :class:`~advgrad.evaluation.generate.AdversarialSet`: ``norm`` per sample, ``passes`` the attack's
    cost per sample it ran on (every sample with a prediction whose label is not its target). A
    sample counts as fooled when classified correctly and the attack succeeded on it (misclassified,
    or classified as its target)."""
    y, clean, adv = result.y, result.pred_clean, result.pred_adv
    tried = clean >= 0 if target is None else (clean >= 0) & (target != y)
    success = adv != y if target is None else adv == target
    correct = clean == y
    attack = AttackRecords(
        fooled_at=torch.where(correct & tried & success, 0, -1),
        prediction=adv[None].clone(),
        norm=norm.double()[None],
        margin=result.margin_adv[None].double(),
        passes=torch.where(tried, passes, 0)[None],
    )
    return BatchRecords(0, y, clean, correct, result.margin_clean.double(), [attack])


def _as_lists(records: BatchRecords) -> dict[str, Any]:
    """The tensors of ``records`` as Python lists (one conversion per tensor, not per element)."""

    def listed(t: Tensor | None) -> Any:
        return None if t is None else t.tolist()

    return {
        "label": listed(records.label),
        "correct": listed(records.clean_correct),
        "clean_prediction": listed(records.clean_prediction),
        "clean_margin": listed(records.clean_margin),
        "certified": listed(records.certified),
        "radius": listed(records.radius),
        "falsified": listed(records.falsified),
        "attacks": [
            {k: listed(getattr(a, k)) for k in ("fooled_at", "prediction", "norm", "margin", "passes")}
            for a in records.attacks
        ],
    }


def _prediction(value: int) -> int | None:
    return None if value < 0 else value


def _number(value: float) -> float | None:
    """A measured float as the shortest decimal naming its float32 (None for NaN and ±∞)."""
    found = float32_decimal(value)
    return found if found is not None and found == found and abs(found) != float("inf") else None
