"""Calibration of the decision distance on a labelled pair set: the distance of every pair
through the kiosk's own comparison (card photo prepared as on the kiosk, the live image gated
and encoded as a live frame), the genuine and impostor distributions, FAR and FRR at each
candidate threshold, and the threshold that meets a target FAR.

A pair list is a CSV file with one pair per line: ``card,live,label``; ``label`` is ``same``
or ``different``; paths are relative to the file's folder; a first line ``card,live,label``
is a header. What a pair set can show is bounded by its size: with N impostor pairs and none
accepted, the FAR is below 3/N at 95 % confidence (the rule of three), no lower.
"""

from __future__ import annotations

import csv
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from kiosk.identity.verify import CardFace, CardPhotoError, Verifier
from tongban.errors import TongbanError

LABELS = {"same": True, "different": False}


class PairsError(TongbanError):
    """A pair list that cannot be used; the message names the line."""

    exit_code = 2
    kind = "pairs_error"


@dataclass(frozen=True)
class Pair:
    line: int
    card: Path
    live: Path
    same: bool


@dataclass
class Calibration:
    """Distances by class and the FAR/FRR table."""

    genuine: list[float]
    impostor: list[float]
    target_far: float
    table: list[dict[str, float]] = field(default_factory=list)
    threshold: float | None = None
    """The largest candidate whose FAR on this set is within the target (None: none is)."""
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        def stats(values: list[float]) -> dict[str, Any]:
            if not values:
                return {"n": 0}
            return {"n": len(values), "min": round(min(values), 4),
                    "median": round(statistics.median(values), 4),
                    "max": round(max(values), 4),
                    "histogram": histogram(values)}

        return {"genuine": stats(self.genuine), "impostor": stats(self.impostor),
                "target_far": self.target_far, "threshold": self.threshold,
                "far_upper_bound_95": None if not self.impostor
                else round(3 / len(self.impostor), 4),
                "table": self.table, "notes": self.notes}


def histogram(values: list[float], width: float = 0.05) -> dict[str, int]:
    """Counts per bin of ``width`` (keys are the bins' lower edges)."""
    counts: dict[str, int] = {}
    for v in sorted(values):
        key = f"{np.floor(v / width) * width:.2f}"
        counts[key] = counts.get(key, 0) + 1
    return counts


def read_pairs(path: Path) -> list[Pair]:
    """Parse a pair list; ``PairsError`` names the first line that is wrong."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise PairsError(f"{path}: cannot be read ({type(exc).__name__})") from None
    pairs: list[Pair] = []
    for number, row in enumerate(csv.reader(text.splitlines()), 1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        cells = [c.strip() for c in row]
        if number == 1 and [c.lower() for c in cells] == ["card", "live", "label"]:
            continue
        if len(cells) != 3:
            raise PairsError(f"{path.name} line {number}: expected card,live,label "
                             f"(3 columns), got {len(cells)}")
        label = cells[2].lower()
        if label not in LABELS:
            raise PairsError(f"{path.name} line {number}: label must be same or different, "
                             f"not {cells[2][:20]!r}")
        card, live = (path.parent / cells[0], path.parent / cells[1])
        for image in (card, live):
            if not image.is_file():
                raise PairsError(f"{path.name} line {number}: no such image {image.name}")
        pairs.append(Pair(number, card, live, LABELS[label]))
    if not pairs:
        raise PairsError(f"{path.name}: no pairs")
    if not any(p.same for p in pairs) or all(p.same for p in pairs):
        raise PairsError(f"{path.name}: needs both same and different pairs")
    return pairs


def _image(path: Path, line: int, name: str) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise PairsError(f"{name} line {line}: {path.name} is not a readable image")
    return image


def distances(pairs: list[Pair], verifier: Verifier, *, name: str = "pairs",
              prepare: Callable[[np.ndarray], np.ndarray] | None = None
              ) -> tuple[list[float], list[float]]:
    """Each pair's distance through the kiosk's comparison (cards prepared once each);
    ``prepare`` turns a card image into what the card reader gives (e.g. chip quality)."""
    cards: dict[Path, CardFace] = {}
    genuine: list[float] = []
    impostor: list[float] = []
    for pair in pairs:
        if pair.card not in cards:
            image = _image(pair.card, pair.line, name)
            try:
                cards[pair.card] = verifier.prepare_card(prepare(image) if prepare else image)
            except (CardPhotoError, ValueError):
                raise PairsError(f"{name} line {pair.line}: no face in the card image "
                                 f"{pair.card.name}") from None
        verdict = verifier.examine(_image(pair.live, pair.line, name), cards[pair.card])
        if verdict.distance is None:
            gates = ", ".join(g.value for g in verdict.quality.failed) or "no face"
            raise PairsError(f"{name} line {pair.line}: the live image {pair.live.name} "
                             f"fails the live gates ({gates})")
        (genuine if pair.same else impostor).append(verdict.distance)
    return genuine, impostor


def calibrate(genuine: list[float], impostor: list[float], target_far: float,
              candidates: list[float] | None = None) -> Calibration:
    """FAR and FRR at each candidate (a pair is accepted at or below a threshold) and the
    largest candidate whose FAR is within ``target_far``."""
    candidates = candidates or [round(0.30 + 0.01 * i, 2) for i in range(41)]
    result = Calibration(sorted(genuine), sorted(impostor), target_far)
    for t in candidates:
        far = sum(d <= t for d in impostor) / len(impostor)
        frr = sum(d > t for d in genuine) / len(genuine)
        result.table.append({"threshold": t, "far": round(far, 4), "frr": round(frr, 4)})
        if far <= target_far:
            result.threshold = t
    bound = 3 / len(impostor)
    if bound > target_far:
        result.notes.append(
            f"{len(impostor)} impostor pairs can show a FAR below {bound:.3g} at best (rule "
            f"of three, 95 %): {int(np.ceil(3 / target_far))} or more are needed to show "
            f"{target_far:g}")
    if result.threshold is None:
        result.notes.append("no candidate threshold meets the target FAR on this set")
    return result
