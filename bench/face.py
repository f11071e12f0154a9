"""Benchmark person-ID verification on this machine.

(1) Latency: median verify time per live frame (gates + detection on a downscaled copy +
landmarks + encoding at full resolution + distance) with the card prepared once, on 640x480
live frames; goal <= 150 ms. The peer measured in the same run is face_recognition's own
one-call path (detection and encoding at full resolution), so the ratio shows what the
downscaled detection saves.
(2) Separation: the distances of the genuine and impostor pairs of ../shared/testdata/faces,
card photos degraded to chip quality, and the margin the threshold leaves on each side.

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

sys.path.insert(0, str(Path(__file__).resolve().parent))

from idcard import machine

from devices.facecam import card_photo_from_portrait
from kiosk.identity.engine import default_engine
from kiosk.identity.verify import Verifier, to_rgb
from tongban import logs

FACES = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "faces"
PEOPLE = {"obama": ["obama.jpg", "obama2.jpg", "obama3.jpg", "obama-480p.jpg",
                    "obama_small.jpg"],
          "biden": ["biden.jpg", "biden2.jpg"]}


def live_640(name: str) -> np.ndarray:
    image = cv2.imread(str(FACES / name))
    assert image is not None
    h, w = image.shape[:2]
    scale = min(640 / w, 480 / h)
    small = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    canvas = np.full((480, 640, 3), 60, np.uint8)
    y, x = (480 - small.shape[0]) // 2, (640 - small.shape[1]) // 2
    canvas[y:y + small.shape[0], x:x + small.shape[1]] = small
    return canvas


def latency(runs: int) -> dict[str, Any]:
    engine = default_engine()
    verifier = Verifier(engine)
    card = verifier.prepare_card(card_photo_from_portrait(cv2.imread(str(FACES / "obama.jpg"))))
    frames = [live_640(n) for n in ("obama-480p.jpg", "obama2.jpg", "obama.jpg")]
    for f in frames:
        verifier.examine(f, card)
    ours, peer = [], []
    for i in range(runs):
        frame = frames[i % len(frames)]
        t0 = time.perf_counter()
        verdict = verifier.examine(frame, card)
        ours.append((time.perf_counter() - t0) * 1000)
        assert verdict.distance is not None
        rgb = to_rgb(frame)
        t0 = time.perf_counter()
        boxes = engine.detect(rgb, 1)  # face_recognition's defaults: full size, upsample 1
        engine.encode(rgb, boxes)
        peer.append((time.perf_counter() - t0) * 1000)
    return {"runs": runs, "verify_ms_median": round(statistics.median(ours), 1),
            "verify_ms_p90": round(statistics.quantiles(ours, n=10)[-1], 1),
            "peer_full_frame_ms_median": round(statistics.median(peer), 1),
            "ratio_to_peer": round(statistics.median(ours) / statistics.median(peer), 2)}


def separation() -> dict[str, Any]:
    engine = default_engine()
    verifier = Verifier(engine)
    genuine, impostor = [], []
    for person, names in PEOPLE.items():
        for card_name in names[:2]:
            portrait = cv2.imread(str(FACES / card_name))
            card = verifier.prepare_card(card_photo_from_portrait(portrait))
            for other, other_names in PEOPLE.items():
                for live_name in other_names:
                    if live_name == card_name:
                        continue
                    verdict = verifier.examine(cv2.imread(str(FACES / live_name)), card)
                    if verdict.distance is None:
                        continue
                    (genuine if other == person else impostor).append(verdict.distance)
    low, high = verifier.band
    return {"threshold": verifier.config.threshold, "review_band": [round(low, 3), round(high, 3)],
            "genuine": sorted(round(d, 3) for d in genuine),
            "impostor": sorted(round(d, 3) for d in impostor),
            "genuine_max": round(max(genuine), 3), "impostor_min": round(min(impostor), 3),
            "margin_below_threshold": round(verifier.config.threshold - max(genuine), 3),
            "margin_above_threshold": round(min(impostor) - verifier.config.threshold, 3),
            "genuine_in_review_band": sum(low < d < high for d in genuine)}


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
