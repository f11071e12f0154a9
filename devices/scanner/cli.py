"""``tongban devices scanner``: detect, capture, modes, reference, simulate."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click
import cv2
import numpy as np

from devices.scanner.camera import DocumentCamera
from devices.scanner.detect import PageDetector
from devices.scanner.enhance import OutputMode
from devices.scanner.material import Material
from devices.scanner.pipeline import PageScanner, ScannerConfig
from devices.scanner.quality import QualityGates
from devices.scanner.synthetic import Difficulty, SceneSpec, render_scene, scene_set
from tongban.output import emit, to_json_text


def _config(ctx: click.Context) -> ScannerConfig:
    from devices.config import load_devices_config

    state = ctx.find_object(dict) or {}
    return load_devices_config(state.get("config")).scanner


def _with_source(config: ScannerConfig, source: str | None) -> ScannerConfig:
    if source is None:
        return config
    camera = config.camera.model_copy(update={"source": source})
    return config.model_copy(update={"camera": camera})


def _read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise click.BadParameter(f"{path} is not a readable image")
    return image


source_option = click.option("--source", "-s", metavar="SRC",
                             help="Camera: index (0), /dev/videoN, video file, URL, image file "
                                  "or folder, or sim[:SEED] (default: scanner.camera.source).")


@click.group()
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="TOML file with a [scanner] section (a kiosk's config file works).")
@click.pass_context
def scanner(ctx: click.Context, config_path: Path | None) -> None:
    """The document camera (高拍仪): find the page, correct it, judge it, capture it.

    \b
    At install, with the mat empty:
      tongban devices scanner modes -s 0            what the camera offers and gives
      tongban devices scanner reference -s 0 --out /var/lib/tongban/mat.png
    Then, with a page on the mat:
      tongban devices scanner capture -s 0 --out /tmp/pages
    Without hardware: --source sim (a SIMULATED camera), or
      tongban devices scanner simulate --out DIR   (scenes with ground truth)
    """
    ctx.ensure_object(dict)["config"] = config_path


@scanner.command()
@click.argument("images", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--reference", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Image of the empty mat from the same camera (improves detection).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line per image.")
@click.pass_context
def detect(ctx: click.Context, images: tuple[Path, ...], reference: Path | None,
           as_json: bool) -> None:
    """Find the page in each IMAGE.

    JSON fields: image, found, corners ([[x, y] x 4], image pixels, clockwise from the
    top-left corner), page_kind (a4_portrait, a4_landscape, id_card, other: as the page lies
    on the mat), sharpness, glare, ms; plus score, gates and message.
    """
    config = _config(ctx)
    ref_path = reference or config.reference
    detector = PageDetector(_read_image(ref_path) if ref_path else None)
    gates = QualityGates(config.quality)
    failures = 0
    for path in images:
        image = _read_image(path)
        started = time.perf_counter()
        detection = detector.detect(image)
        ms = (time.perf_counter() - started) * 1000
        report = gates.assess(image, detection)
        record: dict[str, Any] = {
            "image": str(path), "found": detection.found,
            "corners": (np.round(detection.corners, 1).tolist()
                        if detection.corners is not None else None),
            "page_kind": detection.kind.value if detection.found else None,
            "sharpness": round(report.sharpness, 1), "glare": round(report.glare, 5),
            "ms": round(ms, 2), "score": round(detection.score, 3),
            "gates": [g.value for g in report.failed], "message": report.message("zh"),
        }
        failures += not detection.found
        if as_json:
            click.echo(to_json_text(record, line=True))
        else:
            where = (" ".join(f"({x:.0f},{y:.0f})" for x, y in record["corners"])
                     if detection.found else "no page found")
            click.echo(f"{path}: {record['page_kind'] or '-'} {where} sharpness "
                       f"{record['sharpness']} glare {record['glare']} {record['ms']} ms"
                       + (f"  [{record['message']}]" if record["message"] else ""))
    if failures:
        sys.exit(24)


@scanner.command()
@source_option
@click.option("--out", "out_dir", required=True,
              type=click.Path(file_okay=False, path_type=Path), help="Folder for the pages.")
@click.option("--mode", type=click.Choice([m.value for m in OutputMode]),
              help="Output mode (default: scanner.mode, document).")
@click.option("--pages", type=click.IntRange(1, 50), default=1, show_default=True,
              help="How many pages to capture (an ID card's two sides make one page).")
@click.option("--timeout", type=click.FloatRange(1, 600), default=60, show_default=True,
              help="Seconds to wait for each page.")
@click.option("--reference", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Image of the empty mat (default: scanner.reference).")
@click.option("--pdf", is_flag=True, help="Also write material.pdf with every page.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object at the end.")
@click.pass_context
def capture(ctx: click.Context, source: str | None, out_dir: Path, mode: str | None, pages: int,
            timeout: float, reference: Path | None, pdf: bool, as_json: bool) -> None:
    """Wait for auto-capture (page still, sharp, inside, no glare) and write corrected pages.

    Writes page-N.jpg. On a terminal, press Enter to capture at once (manual capture),
    whatever the gates say.
    """
    config = _with_source(_config(ctx), source)
    if mode:
        config = config.model_copy(update={"mode": OutputMode(mode)})
    if reference:
        config = config.model_copy(update={"reference": reference})
    out_dir.mkdir(parents=True, exist_ok=True)
    material = Material("material", jpeg_quality=config.jpeg_quality)
    written: list[dict[str, Any]] = []
    with DocumentCamera(config.camera) as camera:
        scanner_ = PageScanner(camera, config)
        if sys.stdin is not None and sys.stdin.isatty():
            def manual() -> None:
                for _ in sys.stdin:
                    scanner_.auto.request_manual()
            threading.Thread(target=manual, daemon=True).start()
            click.echo("waiting for a page (Enter: capture now)", err=True)
        while len(material.pages) < pages:
            captured = scanner_.wait_for_page(timeout)
            page = material.add(captured.image, captured.kind)
            side = ("card side 1 of 2" if page is None else
                    "card side 2 of 2 (both sides on one page)"
                    if captured.kind.value == "id_card" else "page")
            if not as_json:
                click.echo(f"captured {side}: {captured.kind.value}, turned "
                           f"{captured.rotation} degrees, {captured.mode.value}", err=True)
            if page is None:
                continue
            path = out_dir / f"page-{len(material.pages)}.jpg"
            path.write_bytes(page.jpeg)
            written.append({"path": str(path), "kind": page.kind.value, "width": page.width,
                            "height": page.height, "bytes": len(page.jpeg)})
    result: dict[str, Any] = {"pages": written, "simulated": camera.simulated,
                              "mode": config.mode.value}
    if pdf:
        pdf_path = out_dir / "material.pdf"
        pdf_path.write_bytes(material.to_pdf())
        result["pdf"] = str(pdf_path)
    if as_json:
        emit(result, as_json=True)
    else:
        for item in written:
            click.echo(f"{item['path']}  {item['kind']}  {item['width']}x{item['height']}")
        if pdf:
            click.echo(result["pdf"])


@scanner.command()
@source_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def modes(ctx: click.Context, source: str | None, as_json: bool) -> None:
    """What the camera was asked for (FOURCC, preview and capture sizes) and what it gave."""
    config = _with_source(_config(ctx), source)
    with DocumentCamera(config.camera) as camera:
        camera.latest()
        report = camera.modes()
    if as_json:
        emit(report.to_json(), as_json=True)
        return
    click.echo(f"source    {report.source} ({report.backend})"
               + ("  SIMULATED" if report.simulated else ""))
    click.echo(f"fourcc    asked {report.fourcc_asked}, got {report.fourcc_got or '?'}")
    for label, asked, got in (("preview", report.preview_asked, report.preview_got),
                              ("capture", report.capture_asked, report.capture_got)):
        flag = "" if tuple(asked) == tuple(got) else "  <- differs"
        click.echo(f"{label:<9} asked {asked[0]}x{asked[1]}, got {got[0]}x{got[1]}{flag}")
    click.echo(f"fps       {report.fps_got:g}")


@scanner.command()
@source_option
@click.option("--out", "out_path", required=True,
              type=click.Path(dir_okay=False, path_type=Path), help="Where to write the image.")
@click.option("--frames", type=click.IntRange(1, 60), default=9, show_default=True,
              help="Frames to take the median of (removes sensor noise).")
@click.pass_context
def reference(ctx: click.Context, source: str | None, out_path: Path, frames: int) -> None:
    """Record the empty mat (do this at install, with nothing on the mat)."""
    config = _with_source(_config(ctx), source)
    with DocumentCamera(config.camera) as camera:
        if hasattr(camera.source, "reference"):
            image = camera.source.reference()
        else:
            seq, stack = 0, []
            for _ in range(frames):
                frame = camera.latest(seq)
                seq = frame.seq
                stack.append(camera.preview(frame))
            image = np.median(np.stack(stack), axis=0).astype(np.uint8)
    found = PageDetector().detect(image)
    if found.found and found.score > 0.8:
        click.echo("warning: something page-like is on the mat; record it empty", err=True)
    if not cv2.imwrite(str(out_path), image):
        raise click.ClickException(f"cannot write {out_path}")
    click.echo(f"{out_path}  {image.shape[1]}x{image.shape[0]}  (set scanner.reference to it)")


@scanner.command()
@click.option("--out", "out_dir", required=True,
              type=click.Path(file_okay=False, path_type=Path), help="Folder for the scenes.")
@click.option("--count", type=click.IntRange(1, 5000), default=20, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--difficulty", type=click.Choice([d.value for d in Difficulty]),
              help="Only this level (default: a mix).")
@click.option("--size", default="960x720", show_default=True, help="Frame size WxH.")
def simulate(out_dir: Path, count: int, seed: int, difficulty: str | None, size: str) -> None:
    """Write SIMULATED scenes (scene-N.jpg, reference-N.jpg, scene-N.json with the true
    corners and page kind): the generator of the test set."""
    try:
        w, h = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise click.BadParameter("size must be WxH, e.g. 960x720", param_hint="--size") from None
    out_dir.mkdir(parents=True, exist_ok=True)
    specs = scene_set(count, size=(w, h), seed=seed)
    if difficulty:
        specs = [SceneSpec(s.seed, Difficulty(difficulty), s.kind, s.size) for s in specs]
    for i, spec in enumerate(specs):
        scene = render_scene(spec)
        cv2.imwrite(str(out_dir / f"scene-{i}.jpg"), scene.image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(str(out_dir / f"reference-{i}.jpg"), scene.reference,
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
        truth = {"simulated": True, "seed": spec.seed, "difficulty": spec.difficulty.value,
                 "page_kind": spec.kind.value, "size": [w, h],
                 "corners": None if scene.corners is None else scene.corners.round(2).tolist()}
        (out_dir / f"scene-{i}.json").write_text(json.dumps(truth) + "\n")
    click.echo(f"{len(specs)} SIMULATED scenes in {out_dir}")
