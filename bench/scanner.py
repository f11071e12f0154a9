"""Benchmark the document camera's page detection and capture.

(1) Accuracy: mean Jaccard index (IoU; a miss scores 0, the SmartDoc 2015 metric) of the
detected against the true quad on SIMULATED scenes across difficulty levels, for our detector
with and without the empty-mat reference, beside the classic Canny + contour baseline measured
in the same run. Goal >= 0.98.
(2) Speed: detection frames per second on 960x720 preview frames on one core (goal >= 30),
and a 4000x3000 still to a corrected, enhanced JPEG (goal <= 300 ms), with the peer ratio
against the baseline's detection time.

    uv run python bench/scanner.py [--scenes 240] [--json]
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

from devices.scanner.detect import PageDetector, baseline_detect
from devices.scanner.enhance import OutputMode
from devices.scanner.geometry import iou
from devices.scanner.material import encode_jpeg
from devices.scanner.pipeline import finish_page
from devices.scanner.synthetic import Difficulty, SceneSpec, render_scene, scene_set
from tongban import logs


def accuracy(count: int, deadline: float) -> dict[str, Any]:
    rows: dict[str, dict[str, list[float]]] = {}
    timings: dict[str, list[float]] = {"ours": [], "baseline": []}
    for spec in scene_set(count, seed=2026):
        if time.monotonic() > deadline:
            break
        scene = render_scene(spec)
        t0 = time.perf_counter()
        ours = PageDetector(scene.reference).detect(scene.image)
        t1 = time.perf_counter()
        base = baseline_detect(scene.image)
        t2 = time.perf_counter()
        no_ref = PageDetector().detect(scene.image)
        timings["ours"].append((t1 - t0) * 1000)
        timings["baseline"].append((t2 - t1) * 1000)
        row = rows.setdefault(spec.difficulty.value, {"ours": [], "no_reference": [],
                                                      "baseline": []})
        row["ours"].append(iou(ours.corners if ours.found else None, scene.corners))
        row["no_reference"].append(iou(no_ref.corners if no_ref.found else None, scene.corners))
        row["baseline"].append(iou(base, scene.corners))
    total = {k: [v for r in rows.values() for v in r[k]] for k in ("ours", "no_reference",
                                                                    "baseline")}
    return {
        "scenes": len(total["ours"]),
        "mean_iou": {k: round(float(np.mean(v)), 4) for k, v in total.items()},
        "by_difficulty": {d: {"scenes": len(r["ours"]),
                              **{k: round(float(np.mean(v)), 4) for k, v in r.items()}}
                          for d, r in sorted(rows.items())},
        "median_ms_with_scene_setup": {k: round(statistics.median(v), 2)
                                       for k, v in timings.items()},
    }


def speed(frames: int) -> dict[str, Any]:
    cv2.setNumThreads(1)  # one core
    scenes = [render_scene(SceneSpec(900 + i, Difficulty.MEDIUM)) for i in range(8)]
    detectors = [PageDetector(s.reference) for s in scenes]
    for s, d in zip(scenes, detectors, strict=True):  # warm-up
        d.detect(s.image)
    t0 = time.perf_counter()
    for i in range(frames):
        detectors[i % 8].detect(scenes[i % 8].image)
    ours = (time.perf_counter() - t0) / frames
    t0 = time.perf_counter()
    for i in range(frames):
        baseline_detect(scenes[i % 8].image)
    base = (time.perf_counter() - t0) / frames
    cv2.setNumThreads(2)
    spec = SceneSpec(950, Difficulty.MEDIUM)
    preview = render_scene(spec)
    still = render_scene(SceneSpec(950, Difficulty.MEDIUM, size=(4000, 3000))).image
    found = PageDetector(preview.reference).detect(preview.image)
    assert found.corners is not None
    capture_ms = []
    stages: list[dict[str, float]] = []
    for _ in range(8):
        t0 = time.perf_counter()
        out, _, _, _, stage = finish_page(still, found.corners, preview.image.shape[:2],
                                          OutputMode.DOCUMENT)
        t1 = time.perf_counter()
        jpeg = encode_jpeg(out, 88)
        capture_ms.append((time.perf_counter() - t0) * 1000)
        stage["jpeg_ms"] = (time.perf_counter() - t1) * 1000
        stages.append(stage)
    return {
        "detect_fps_one_core": round(1 / ours, 1),
        "baseline_fps_one_core": round(1 / base, 1),
        "detect_cost_vs_baseline": round(ours / base, 2),
        "capture_4000x3000_ms_median": round(statistics.median(capture_ms), 1),
        "capture_stages_ms_median": {k: round(statistics.median(s[k] for s in stages), 1)
                                     for k in stages[0]},
        "capture_output": f"{out.shape[1]}x{out.shape[0]} JPEG {len(jpeg)} bytes",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=240)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=600, help="time cap for accuracy")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logs.configure("error")
    report = {"bench": "scanner", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "machine": machine(),
              "accuracy": accuracy(args.scenes, time.monotonic() + args.seconds),
              "speed": speed(args.frames)}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    acc, spd = report["accuracy"], report["speed"]
    print(f"scanner bench, {report['date']}, {report['machine']}")
    print(f"accuracy over {acc['scenes']} SIMULATED scenes (mean IoU, a miss scores 0):")
    print("| difficulty | scenes | ours (reference) | ours (no reference) | Canny+contour |")
    print("|---|---|---|---|---|")
    for d, r in acc["by_difficulty"].items():
        print(f"| {d} | {r['scenes']} | {r['ours']} | {r['no_reference']} | {r['baseline']} |")
    m = acc["mean_iou"]
    print(f"| all | {acc['scenes']} | {m['ours']} | {m['no_reference']} | {m['baseline']} |")
    print(json.dumps(spd, indent=2))


if __name__ == "__main__":
    main()
