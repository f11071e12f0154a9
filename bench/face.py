"""Benchmark person-ID verification on this machine.

(1) Latency: median verify time per 640x480 live frame (gates, detection on a 320 px copy,
landmarks, encoding at full resolution, distance), card prepared once; goal <= 150 ms.
Measured in the same run: the frame as it was before this change (the same work: fusion costs
nothing per frame), a frame encoded with its mirror image (``mirror_live``), and
face_recognition's own one-call path (detection and encoding at full resolution). The card's
preparation (two sizes, mirrored, jittered; once per card) is timed too.
(2) Operating points on chip-quality pairs: every test portrait of ../shared/testdata/faces
degraded to a chip photo (102 x 126, JPEG 30) as the card, against every other portrait of the
same person (genuine) and of the other person (impostor), each live portrait played as a
SIMULATED sitter at the portrait's size (slight sway and turns) giving the 3 frames a liveness
step hands over and 5 fresh ones. Three pipelines on the same pairs: "single" (the card at one
size, one live frame: the comparison before this change), "fused" (the kiosk's default now)
and "fused_mirror_live". For each operating point (match at or below, review up to 0.52) the
share of genuine pairs matched outright, sent to review and refused, and the impostors matched
or sent to review. A pair without a distance fails the run.

    uv run python bench/face.py [--runs 40] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from devices.facecam import SimulatedFace, card_photo_from_portrait
from kiosk.identity.engine import default_engine
from kiosk.identity.verify import Verifier, VerifyConfig, to_rgb
from tongban import logs
from tongban.machine import machine

FACES = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "faces"
PEOPLE = {"obama": ["obama.jpg", "obama2.jpg", "obama3.jpg", "obama-480p.jpg",
                    "obama_small.jpg"],
          "biden": ["biden.jpg", "biden2.jpg"]}
SINGLE = VerifyConfig(card_widths=[400], card_jitters=1, mirror=False, fuse=1, frames=1)
"""The comparison as it was: card at 400 px, one live frame, no mirror, best frame counts."""
FUSED = VerifyConfig()
FUSED_MIRRORED = VerifyConfig(mirror_live=True)
"""The kiosk's default plus each live frame's mirror image (twice the encoding time)."""
MATCH_CUTS = (0.42, 0.445)
REVIEW_UP_TO = 0.52


def live_640(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    scale = min(640 / w, 480 / h)
    small = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    canvas = np.full((480, 640, 3), 60, np.uint8)
    y, x = (480 - small.shape[0]) // 2, (640 - small.shape[1]) // 2
    canvas[y:y + small.shape[0], x:x + small.shape[1]] = small
    return canvas


def load(name: str) -> np.ndarray:
    image = cv2.imread(str(FACES / name))
    if image is None:
        sys.exit(f"bench/face.py: cannot read {name}")
    return image


def latency(runs: int) -> dict[str, Any]:
    engine = default_engine()
    fused, single = Verifier(engine, FUSED), Verifier(engine, SINGLE)
    mirrored = Verifier(engine, FUSED_MIRRORED)
    chip = card_photo_from_portrait(load("obama.jpg"))
    t0 = time.perf_counter()
    card = fused.prepare_card(chip)
    card_ms = (time.perf_counter() - t0) * 1000
    card1 = single.prepare_card(chip)
    frames = [live_640(load(n)) for n in ("obama-480p.jpg", "obama2.jpg", "obama.jpg")]
    for f in frames:
        fused.examine(f, card)
    ours, plain, peer, both = [], [], [], []
    for i in range(runs):
        frame = frames[i % len(frames)]
        t0 = time.perf_counter()
        verdict = fused.examine(frame, card)
        ours.append((time.perf_counter() - t0) * 1000)
        if verdict.distance is None:
            sys.exit("bench/face.py: a latency frame lost its face")
        t0 = time.perf_counter()
        single.examine(frame, card1)
        plain.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        mirrored.examine(frame, card)
        both.append((time.perf_counter() - t0) * 1000)
        rgb = to_rgb(frame)
        t0 = time.perf_counter()
        boxes = engine.detect(rgb, 1)  # face_recognition's defaults: full size, upsample 1
        engine.encode(rgb, boxes)
        peer.append((time.perf_counter() - t0) * 1000)
    med = statistics.median
    return {"runs": runs, "verify_ms_median": round(med(ours), 1),
            "verify_ms_p90": round(statistics.quantiles(ours, n=10)[-1], 1),
            "single_encoding_ms_median": round(med(plain), 1),
            "mirror_live_ms_median": round(med(both), 1),
            "peer_full_frame_ms_median": round(med(peer), 1),
            "ratio_to_single": round(med(ours) / med(plain), 2),
            "ratio_to_peer": round(med(ours) / med(peer), 2),
            "card_prepare_ms": round(card_ms, 1)}


def sitter_frames(name: str) -> list[tuple[np.ndarray, float]]:
    """What the kiosk hands the comparison: 3 frontal frames from the liveness step and 5
    fresh ones, from the portrait (at its own size, as the earlier figures) played as a
    SIMULATED sitter."""
    face = SimulatedFace(load(name), seed=len(name))
    turns = [0.0, 0.04, -0.04, 0.0, 0.02, -0.02, 0.0, 0.03]
    return [(face.render(turn=t, jitter=1.5), i / 10) for i, t in enumerate(turns)]


def pair_distances(config: VerifyConfig) -> tuple[list[float], list[float]]:
    verifier = Verifier(default_engine(), config)
    sitters = {n: sitter_frames(n) for names in PEOPLE.values() for n in names}
    genuine, impostor = [], []
    for person, names in PEOPLE.items():
        for card_name in names:
            card = verifier.prepare_card(card_photo_from_portrait(load(card_name)))
            for other, other_names in PEOPLE.items():
                for live_name in other_names:
                    if live_name == card_name:
                        continue
                    result = verifier.verify(card, sitters[live_name],
                                             limit=max(config.frames, 8)
                                             if config.fuse > 1 else 1)
                    if result.distance is None:
                        sys.exit(f"bench/face.py: no distance for {card_name} vs {live_name} "
                                 f"({result.decision.value}): the run is void")
                    (genuine if other == person else impostor).append(result.distance)
    return genuine, impostor


def operating_points(genuine: list[float], impostor: list[float]) -> list[dict[str, Any]]:
    out = []
    for cut in MATCH_CUTS:
        def share(values: list[float], low: float, high: float) -> float:
            return round(100 * sum(low < d <= high for d in values) / len(values), 1)
        out.append({"match_at_or_below": cut, "review_up_to": REVIEW_UP_TO,
                    "genuine_match_pct": share(genuine, -1, cut),
                    "genuine_review_pct": share(genuine, cut, REVIEW_UP_TO),
                    "genuine_refused_pct": share(genuine, REVIEW_UP_TO, 9),
                    "impostor_match": sum(d <= cut for d in impostor),
                    "impostor_review": sum(cut < d <= REVIEW_UP_TO for d in impostor)})
    return out


def separation() -> dict[str, Any]:
    report: dict[str, Any] = {}
    for label, config in (("single", SINGLE), ("fused", FUSED),
                          ("fused_mirror_live", FUSED_MIRRORED)):
        genuine, impostor = pair_distances(config)
        report[label] = {"genuine_n": len(genuine), "impostor_n": len(impostor),
                         "genuine": sorted(round(d, 3) for d in genuine),
                         "impostor_min": round(min(impostor), 3),
                         "impostor_median": round(statistics.median(impostor), 3),
                         "points": operating_points(genuine, impostor)}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not FACES.is_dir():
        sys.exit("bench/face.py needs ../shared/testdata/faces beside the project")
    logs.configure("error")
    report = {"bench": "face", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "machine": machine(), "latency": latency(args.runs), "separation": separation()}
    print(json.dumps(report, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
