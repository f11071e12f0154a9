"""``tongban face``: verify a live face against a card photo; run a liveness challenge."""

from __future__ import annotations

import random
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import click
import cv2
import numpy as np

from devices.camera import CameraConfig, CameraError
from devices.facecam import FaceCamera, SimulatedFaceSource
from kiosk.identity.config import load_face_config
from kiosk.identity.liveness import LivenessChallenge, LivenessConfig, LivenessStep
from kiosk.identity.verify import Verifier, VerifyConfig
from tongban.output import emit

VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".y4m"}


def _image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise click.BadParameter(f"{path} is not a readable image", param_hint="--card/--live")
    return image


def _video_frames(path: Path, count: int, span: float) -> Iterator[tuple[np.ndarray, float]]:
    """Up to ``count`` frames spread over the first ``span`` seconds of a video."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise CameraError(f"cannot open video {path}")
    fps = cap.get(cv2.CAP_PROP_FPS) or 15.0
    step = max(1, int(span * fps / count))
    index = taken = 0
    try:
        while taken < count:
            ok, frame = cap.read()
            if not ok:
                break
            if index % step == 0:
                taken += 1
                yield frame, index / fps
            index += 1
    finally:
        cap.release()


@click.group()
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="TOML file with a [face] section (a kiosk's config file works).")
@click.pass_context
def face(ctx: click.Context, config_path: Path | None) -> None:
    """Person-ID verification (人证核验): the live face against the card photo, and liveness.

    \b
      tongban face verify --card card.bmp --live camera.jpg --json
      tongban face liveness --source 0            (a camera; follow the prompts)
      tongban face liveness --source sim          (a SIMULATED face acting out the prompts)
      tongban face calibrate pairs.csv --target-far 0.0001   (thresholds on your pair set)

    The engine is dlib (face_recognition) with 5-point alignment. Decisions: match, no_match,
    review (within the band around the threshold: the clerk decides), no_face,
    multiple_faces, poor_quality.
    """
    ctx.ensure_object(dict)["config"] = load_face_config(config_path)


@face.command()
@click.option("--card", "card_path", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The card photo (the decoded 102 x 126 chip photo, or any portrait).")
@click.option("--live", "live_path", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A live image, or a video (the best of several frames counts).")
@click.option("--frames", type=click.IntRange(1, 30), default=5, show_default=True,
              help="Frames taken from a video.")
@click.option("--threshold", type=click.FloatRange(0.1, 1.2),
              help="Decision distance (default 0.47, strict).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def verify(ctx: click.Context, card_path: Path, live_path: Path, frames: int,
           threshold: float | None, as_json: bool) -> None:
    """Compare the live face with the card photo.

    JSON fields: decision (match | no_match | review | no_face | multiple_faces |
    poor_quality), distance, threshold, review_band, reasons, frames, ms.
    """
    from kiosk.identity.engine import default_engine

    config: VerifyConfig = ctx.obj["config"].model_copy(update={"frames": frames})
    if threshold is not None:
        config = config.model_copy(update={"threshold": threshold})
    verifier = Verifier(default_engine(), config)
    started = time.perf_counter()
    card = verifier.prepare_card(_image(card_path))
    if live_path.suffix.lower() in VIDEO_SUFFIXES:
        live = _video_frames(live_path, frames, span=2.0)
    else:
        live = iter([(_image(live_path), 0.0)])
    result = verifier.verify(card, live)
    data = result.to_json()
    data["ms"] = round((time.perf_counter() - started) * 1000, 1)
    if as_json:
        emit(data, as_json=True)
        return
    distance = "-" if result.distance is None else f"{result.distance:.3f}"
    click.echo(f"decision   {result.decision.value}")
    click.echo(f"distance   {distance} (threshold {result.threshold}, review band "
               f"{result.band[0]:.2f}-{result.band[1]:.2f})")
    for reason in result.reasons:
        click.echo(f"reason     {reason}")
    click.echo(f"time       {data['ms']} ms")


@face.command()
@click.option("--source", "-s", metavar="SRC",
              help="Camera index, /dev/videoN, a video file, or sim (a SIMULATED face); "
                   "default: face.camera.source.")
@click.option("--steps", help="Comma-separated steps in this order (default: turn_left,"
                              "turn_right in random order).")
@click.option("--blink", is_flag=True,
              help="Add a blink step (uses the 68-point landmark model, whose training data "
                   "restricts commercial use).")
@click.option("--step-timeout", type=click.FloatRange(1, 60),
              help="Seconds per step (default: face.liveness.step_timeout, 6).")
@click.option("--seed", type=int, help="Fix the random step order.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def liveness(ctx: click.Context, source: str | None, steps: str | None, blink: bool,
             step_timeout: float | None, seed: int | None, as_json: bool) -> None:
    """Run a liveness challenge on a camera or a video; prompts go to stderr.

    JSON fields: passed, steps [{step, started_at, ended_at, passed, peak}], reasons,
    frames, motion_px, simulated, challenge_id, sequence (the steps asked, in order).
    """
    from kiosk.identity.engine import default_engine

    settings = ctx.obj["config"]
    config: LivenessConfig = settings.liveness
    if step_timeout is not None:
        config = config.model_copy(update={"step_timeout": step_timeout})
    if blink:
        config = config.model_copy(update={"use_68_point_landmarks": True})
    if steps:
        try:
            chosen = [LivenessStep(s.strip()) for s in steps.split(",") if s.strip()]
        except ValueError:
            raise click.BadParameter(f"steps are {', '.join(s.value for s in LivenessStep)}",
                                     param_hint="--steps") from None
        config = config.model_copy(update={"steps": chosen, "random_order": False})
    camera_config: CameraConfig = settings.camera
    if source is not None:
        camera_config = camera_config.model_copy(update={"source": source})
    camera = FaceCamera(camera_config)
    challenge = LivenessChallenge(default_engine(), config,
                                  random.Random(seed) if seed is not None else None,
                                  simulated=camera.simulated)
    status = challenge.status()
    shown = None
    with camera:
        started = None
        seq = 0
        while not status.done:
            if isinstance(camera.source, SimulatedFaceSource):
                camera.source.step = status.step.value if status.step else None
            frame = camera.latest(seq)
            seq = frame.seq
            started = frame.t if started is None else started
            status = challenge.feed(frame.image, frame.t - started)
            if status.prompt_zh and status.prompt_zh != shown:
                shown = status.prompt_zh
                click.echo(f"[{status.index + 1}/{status.total}] {status.prompt_zh}  "
                           f"({status.prompt_en})", err=True)
    assert status.result is not None
    if as_json:
        emit(status.result.to_json(), as_json=True)
    else:
        verdict = "PASSED" if status.result.passed else "FAILED"
        click.echo(f"liveness {verdict}" + (" (SIMULATED face)" if status.result.simulated
                                             else ""))
        for step in status.result.steps:
            click.echo(f"  {step.step.value:<11} {'ok' if step.passed else 'failed':<7} "
                       f"peak {step.peak:.3f}")
        for reason in status.result.reasons:
            click.echo(f"  {reason}")
    sys.stdout.flush()


@face.command()
@click.argument("pairs_csv", metavar="PAIRS.csv",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--target-far", type=click.FloatRange(1e-7, 0.5, min_open=False), default=1e-4,
              show_default=True, help="The false accept rate the threshold must meet.")
@click.option("--chip-quality", is_flag=True,
              help="Degrade each card image to a chip photo first (102 x 126, JPEG 30): for "
                   "pair sets of ordinary portraits. Leave off for decoded chip photos.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def calibrate(ctx: click.Context, pairs_csv: Path, target_far: float, chip_quality: bool,
              as_json: bool) -> None:
    """Measure the comparison on a labelled pair set and choose the threshold.

    \b
    PAIRS.csv has one pair per line, card image, live image, label:
      card,live,label
      cards/0001.bmp,live/0001-a.jpg,same
      cards/0001.bmp,live/0002-a.jpg,different
    Paths are relative to the CSV's folder; label is same or different. Each pair goes
    through the kiosk's own comparison (card photo prepared as on the kiosk, the live image
    gated and encoded as a live frame).

    \b
    Prints the genuine (same) and impostor (different) distance distributions, FAR (share of
    impostor pairs at or below the threshold) and FRR (share of genuine pairs above it) at
    each candidate 0.30-0.70, and the largest threshold whose FAR meets --target-far. Set it
    in the kiosk's file as the match distance: [face] threshold = T + match_margin (0.025).

    \b
    What a set can show is bounded by its size: with N impostor pairs and none accepted the
    FAR is only shown below 3/N (95 %). A target of 0.0001 needs 30,000 impostor pairs, of
    the population the kiosks serve (a province's own licensed East Asian pair set).
    Exit code 2: a pair list that cannot be used (the line is named).
    """
    from kiosk.identity.calibrate import calibrate as run
    from kiosk.identity.calibrate import distances, read_pairs
    from kiosk.identity.engine import default_engine

    pairs = read_pairs(pairs_csv)
    config: VerifyConfig = ctx.obj["config"]
    verifier = Verifier(default_engine(), config)
    from devices.facecam import card_photo_from_portrait

    genuine, impostor = distances(pairs, verifier, name=pairs_csv.name,
                                  prepare=card_photo_from_portrait if chip_quality else None)
    result = run(genuine, impostor, target_far)
    data = result.to_json()
    data["pairs"] = len(pairs)
    data["chip_quality"] = chip_quality
    if as_json:
        emit(data, as_json=True)
        return
    for label, values in (("genuine", result.genuine), ("impostor", result.impostor)):
        click.echo(f"{label:<9} n={len(values):<5} min {min(values):.3f}  median "
                   f"{statistics.median(values):.3f}  max {max(values):.3f}")
        for edge, count in data[label]["histogram"].items():
            click.echo(f"  {edge}  {'#' * count} {count}")
    click.echo("threshold  FAR      FRR")
    for row in result.table:
        click.echo(f"  {row['threshold']:.2f}     {row['far']:<8.4f} {row['frr']:.4f}")
    chosen = "none" if result.threshold is None else f"{result.threshold:.2f}"
    click.echo(f"threshold meeting FAR <= {target_far:g}: {chosen}")
    for note in result.notes:
        click.echo(f"note: {note}")
