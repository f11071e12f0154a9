"""A second, independent SIMULATED document camera: a lit room rather than painted effects.

``synthetic`` paints its effects onto the frame (gradients, a darkened half-plane, a glare
blob). This generator renders a small physical model instead, so that a detector tuned on one
is tried on scenes it was not tuned for:

- a lamp of finite size above the mat lights it (Lambert shading with the inverse-square
  fall-off, plus ambient light); the sheet is slightly curled or folded, so its shading follows
  its surface and its lifted edges shift in the camera's view and cast a thin shadow of their
  own;
- a head and an arm between the lamp and the mat cast real shadows: the occluder's silhouette
  projected from the lamp onto the mat, with a penumbra as wide as the lamp's size times the
  occluder's height over its distance to the lamp (an arm just above the page casts a hard one);
- papers in several colours with fibre texture; forms with a framed text block, tables and a
  red seal; ID-1 cards; another paper partly under the one to find;
- mats that are dark, light (nearly paper-coloured), striped (a cutting mat's grid, wood grain)
  or cluttered (printed labels, a pen, a card-sized sticker);
- a specular highlight of the lamp on the glossy paper or card, where the mirror geometry puts
  it;
- the camera: a small keystone, vignetting, defocus, shot and read noise, and MJPG (JPEG) as a
  UVC camera delivers it.

Scenes are deterministic in their seed and carry their ground truth (the corners of the paper
to find, clockwise from top-left, after keystone and curl) and the factors they were drawn
with, for per-kind reports. Seeds are split in two halves: ``Split.TUNE`` (even) for work on
the detector and ``Split.HELD_OUT`` (odd) for reports only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

import cv2
import numpy as np

from devices.scanner.geometry import PageKind, order_corners


class Level(StrEnum):
    """How many hard factors a scene draws."""

    EASY = "easy"
    MEDIUM = "medium"
    HARD = "hard"


class Split(StrEnum):
    """Which half of the seeds: tune the detector on one, report on the other."""

    TUNE = "tune"
    HELD_OUT = "held_out"


class MatKind(StrEnum):
    DARK = "dark"
    LIGHT = "light"
    STRIPED = "striped"
    CLUTTERED = "cluttered"


class ShadowKind(StrEnum):
    NONE = "none"
    SOFT = "soft"
    """A head's or an arm's shadow with a wide penumbra (a large lamp, the occluder high)."""
    HARD = "hard"
    """An arm close above the page under a small lamp: a narrow penumbra."""


@dataclass(frozen=True)
class Spec2:
    """What to render."""

    seed: int
    level: Level = Level.MEDIUM
    kind: PageKind = PageKind.A4_PORTRAIT
    size: tuple[int, int] = (960, 720)
    """Frame width and height in pixels."""
    mat: MatKind | None = None
    """Force the mat (None: drawn from the seed, as every factor below)."""
    shadow: ShadowKind | None = None
    glare: bool | None = None
    overlap: bool | None = None
    rotation: float | None = None
    """Force the paper's in-plane rotation, degrees."""


@dataclass(frozen=True)
class Factors:
    """What the scene was drawn with (for reports by failure kind)."""

    mat: MatKind
    shadow: ShadowKind
    shadow_crosses_page: bool
    """The shadow's edge runs across the paper (not only over the mat)."""
    text_block: bool
    """A framed text block or table printed inside the page (a form)."""
    glare: bool
    overlap: bool
    """Another paper lies partly under the one to find."""
    rotation_deg: float
    """In-plane rotation of the paper, degrees."""
    curl: float
    """Largest lift of the sheet above the mat, pixels."""


@dataclass
class Scene2:
    """A rendered frame, the empty mat under the same lamp, and the ground truth."""

    image: np.ndarray
    corners: np.ndarray
    kind: PageKind
    reference: np.ndarray
    spec: Spec2
    factors: Factors
    page: np.ndarray = field(repr=False)
    """The flat paper as printed."""


PAPERS = ((246, 248, 250), (232, 240, 246), (214, 236, 246), (240, 236, 226), (226, 230, 232),
          (250, 250, 252))
"""Paper colours (BGR albedo x 255): white, cream, light yellow, light blue, recycled, bright."""


# -- paper ---------------------------------------------------------------------------------------

def _fibre(rng: np.random.Generator, shape: tuple[int, int], amount: float) -> np.ndarray:
    """Paper fibre: fine noise stretched along the sheet's width, as a multiplicative field."""
    h, w = shape
    noise = rng.normal(0, 1, (max(8, h // 3), max(8, w // 3))).astype(np.float32)
    small = cv2.GaussianBlur(noise, (0, 0), sigmaX=1.6, sigmaY=0.5)
    fibre = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.asarray(1 + amount * fibre, np.float32)


def _greek_line(img: np.ndarray, rng: np.random.Generator, x0: int, y: int, x1: int,
                height: int, ink: tuple[int, int, int]) -> None:
    """A line of text as word-shaped strokes (glyph clusters of random widths)."""
    x = x0
    while x < x1:
        word = int(rng.integers(2, 9)) * max(2, height * 2 // 3)
        end = min(x1, x + word)
        for cx in range(x, end, max(2, height // 2)):
            top = y - int(rng.integers(max(1, height // 2), height + 1))
            cv2.rectangle(img, (cx, top), (min(end, cx + max(1, height // 3)), y), ink, -1)
        x = end + max(3, height)


def render_form(rng: np.random.Generator, width: int, landscape: bool) -> tuple[np.ndarray, bool]:
    """An A4 sheet (portrait ``width`` px wide, or landscape); returns it and whether it holds a
    framed text block or table."""
    height = round(width * 297 / 210)
    if landscape:
        width, height = height, width
    paper = PAPERS[int(rng.integers(len(PAPERS)))]
    img = np.full((height, width, 3), paper, np.uint8)
    mm = min(width, height) / 210
    r, g, b = (int(v) for v in rng.integers(5, 60, 3))
    ink = (r, g, b)
    margin = int(rng.uniform(10, 25) * mm)
    framed = bool(rng.random() < 0.6)
    line_h = max(3, int(2.6 * mm))
    gap = max(line_h + 3, int(rng.uniform(5, 8) * mm))
    y = margin + int(12 * mm)
    cv2.rectangle(img, (width // 2 - int(40 * mm), margin),
                  (width // 2 + int(40 * mm), margin + int(6 * mm)), ink, -1)  # a heading
    if framed:  # a form: one thick frame around the body, rows ruled inside
        frame_w = max(2, int(rng.uniform(0.5, 1.4) * mm))
        cv2.rectangle(img, (margin, y), (width - margin, height - margin), ink, frame_w)
        rows = int(rng.integers(6, 14))
        row_h = (height - margin - y) // rows
        split = margin + int((width - 2 * margin) * rng.uniform(0.25, 0.4))
        for r in range(1, rows):
            cv2.line(img, (margin, y + r * row_h), (width - margin, y + r * row_h), ink,
                     max(1, frame_w // 2))
        cv2.line(img, (split, y), (split, height - margin), ink, max(1, frame_w // 2))
        for r in range(rows):
            base = y + r * row_h + row_h // 2 + line_h // 2
            _greek_line(img, rng, margin + int(3 * mm), base, split - int(3 * mm), line_h, ink)
            if rng.random() < 0.7:
                _greek_line(img, rng, split + int(3 * mm), base,
                            width - margin - int(rng.uniform(5, 60) * mm), line_h, ink)
    else:  # a letter: dense justified text, sometimes a shaded table
        while y < height - margin - int(30 * mm):
            if rng.random() < 0.08:
                th = int(rng.uniform(20, 40) * mm)
                cv2.rectangle(img, (margin, y), (width - margin, y + th), (210, 210, 210), -1)
                cv2.rectangle(img, (margin, y), (width - margin, y + th), ink, 1)
                y += th + gap
                continue
            end = width - margin - (int(rng.uniform(0, 50) * mm) if rng.random() < 0.2 else 0)
            _greek_line(img, rng, margin, y, end, line_h, ink)
            y += gap
    seal = (int(width - margin - rng.uniform(25, 50) * mm),
            int(height - margin - rng.uniform(15, 40) * mm))
    radius = int(rng.uniform(16, 22) * mm)
    red = (30, 30, int(rng.integers(170, 230)))
    overlay = img.copy()
    cv2.circle(overlay, seal, radius, red, max(2, radius // 10), cv2.LINE_AA)
    cv2.circle(overlay, seal, radius // 3, red, -1, cv2.LINE_AA)
    cv2.addWeighted(overlay, 0.75, img, 0.25, 0, img)
    fibre = _fibre(rng, img.shape[:2], 0.025)
    return np.asarray(np.clip(img * fibre[..., None], 0, 255), np.uint8), framed


def render_card(rng: np.random.Generator, width: int) -> np.ndarray:
    """An ID-1 card (85.6 x 54 mm): pale printed guilloche, a photo box or emblem, text."""
    height = round(width * 54 / 85.6)
    mm = width / 85.6
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    bases = ((232, 222, 214), (226, 232, 236), (214, 226, 236))
    base = np.array(bases[int(rng.integers(len(bases)))], np.float32)
    wave = 6 * np.sin(xx / (2.2 * mm) + 3 * np.sin(yy / (7 * mm)))
    img = np.clip(base[None, None, :] + wave[..., None], 0, 255).astype(np.uint8)
    ink = (40, 40, 40)
    if rng.random() < 0.5:  # the photo side
        cv2.rectangle(img, (int(57 * mm), int(8 * mm)), (int(81 * mm), int(40 * mm)),
                      (170, 180, 200), -1)
        cv2.ellipse(img, (int(69 * mm), int(22 * mm)), (int(7 * mm), int(9 * mm)), 0, 0, 360,
                    (90, 120, 160), -1)
        rows: tuple[int, ...] = (8, 15, 22, 30, 38, 47)
    else:  # the emblem side
        cv2.circle(img, (int(14 * mm), int(14 * mm)), int(9 * mm), (30, 40, 190), -1)
        rows = (14, 24, 40, 46)
    for r in rows:
        _greek_line(img, rng, int(6 * mm), int(r * mm), int(52 * mm), max(2, int(2.4 * mm)), ink)
    return np.asarray(img)


# -- the room ------------------------------------------------------------------------------------

def render_mat(rng: np.random.Generator, size: tuple[int, int], kind: MatKind) -> np.ndarray:
    """The mat's albedo (BGR, 0..255 float32)."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind is MatKind.DARK:
        colour = rng.choice([[28, 28, 30], [40, 60, 30], [70, 40, 25], [35, 35, 70]])
        mat = np.ones((h, w, 3), np.float32) * np.array(colour, np.float32)
    elif kind is MatKind.LIGHT:
        colour = rng.choice([[200, 204, 206], [186, 200, 212], [215, 215, 210], [170, 175, 172]])
        mat = np.ones((h, w, 3), np.float32) * np.array(colour, np.float32)
    elif kind is MatKind.STRIPED:
        if rng.random() < 0.5:  # a green cutting mat with its grid
            mat = np.ones((h, w, 3), np.float32) * np.array([70, 110, 40], np.float32)
            step = int(rng.uniform(18, 30))
            fine = ((xx.astype(int) % step) < 2) | ((yy.astype(int) % step) < 2)
            coarse = ((xx.astype(int) % (5 * step)) < 3) | ((yy.astype(int) % (5 * step)) < 3)
            mat[fine] = (150, 190, 140)
            mat[coarse] = (200, 220, 190)
        else:  # wood grain: bands along one direction
            angle = rng.uniform(0, math.pi)
            u = math.cos(angle) * xx + math.sin(angle) * yy
            grain = np.sin(u / rng.uniform(6, 14) + 2 * np.sin(u / 90)) * 0.5 + 0.5
            light = np.array(rng.choice([[90, 140, 190], [60, 95, 140]]), np.float32)
            mat = light[None, None, :] * (0.65 + 0.35 * grain[..., None])
    else:  # cluttered: a printed mat with labels, a pen, a sticker
        mat = np.ones((h, w, 3), np.float32) * np.array(
            rng.choice([[120, 120, 125], [60, 70, 90], [180, 170, 160]]), np.float32)
        for _ in range(int(rng.integers(8, 16))):
            x, y = int(rng.uniform(0, w)), int(rng.uniform(0, h))
            bw, bh = int(rng.uniform(20, 140)), int(rng.uniform(10, 70))
            colour = tuple(float(v) for v in rng.integers(0, 256, 3))
            cv2.rectangle(mat, (x, y), (x + bw, y + bh), colour, -1 if rng.random() < 0.6 else 3)
        for _ in range(2):
            p = rng.uniform(0, 1, 2) * (w, h)
            q = p + rng.normal(0, 1, 2) * 120
            cv2.line(mat, tuple(int(v) for v in p), tuple(int(v) for v in q),
                     tuple(float(v) for v in rng.integers(0, 256, 3)), int(rng.uniform(4, 12)))
    texture = cv2.resize(rng.normal(0, 1, (h // 4, w // 4)).astype(np.float32), (w, h))
    return np.asarray(mat * (1 + 0.03 * texture[..., None]), np.float32)


def _keystone(rng: np.random.Generator, size: tuple[int, int], degrees: float) -> np.ndarray:
    """A homography for a camera tilted by up to ``degrees`` about both axes."""
    w, h = size
    f = 1.1 * w
    ax, ay = (math.radians(rng.uniform(-degrees, degrees)) for _ in range(2))
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    k = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]])
    return np.asarray(k @ ry @ rx @ np.linalg.inv(k))


def _project(homography: np.ndarray, pts: np.ndarray) -> np.ndarray:
    out = cv2.perspectiveTransform(np.asarray(pts, np.float64).reshape(-1, 1, 2), homography)
    return np.asarray(out.reshape(-1, 2))


def _lift(rng: np.random.Generator, shape: tuple[int, int], amount: float) -> np.ndarray:
    """Height of the sheet above the mat (pixels) over the flat sheet: a curl along one edge,
    a fold across the middle, or both."""
    h, w = shape
    v, u = np.mgrid[0:h, 0:w].astype(np.float32)
    u /= max(1, w - 1)
    v /= max(1, h - 1)
    lift = np.zeros((h, w), np.float32)
    if rng.random() < 0.6:  # one edge curls up
        edge = int(rng.integers(4))
        t = (u, 1 - u, v, 1 - v)[edge]
        width = rng.uniform(0.15, 0.35)
        lift += amount * np.clip((width - t) / width, 0, 1) ** 2
    if rng.random() < 0.5:  # a fold line, as a letter taken out of an envelope
        along = u if rng.random() < 0.5 else v
        at = rng.uniform(0.3, 0.7)
        tent = rng.uniform(0.3, 0.7) * amount
        lift += tent * (1 - np.abs(along - at) / max(at, 1 - at)) if rng.random() < 0.5 \
            else tent * np.abs(along - at) / max(at, 1 - at)
    return lift


def _capsule(mask: np.ndarray, a: np.ndarray, b: np.ndarray, radius: float) -> None:
    cv2.line(mask, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), 1.0, max(1, int(2 * radius)),
             cv2.LINE_AA)


def _occluder_shadow(rng: np.random.Generator, size: tuple[int, int], lamp: np.ndarray,
                     lamp_radius: float, kind: ShadowKind, target: np.ndarray
                     ) -> np.ndarray:
    """Fraction of the lamp hidden at each mat point by a head or an arm (0..1)."""
    w, h = size
    shadow: np.ndarray = np.zeros((h, w), np.float32)
    side = int(rng.integers(4))  # where the citizen stands
    inward = np.array([(0, 1), (0, -1), (1, 0), (-1, 0)][side], np.float64)
    edge_point = np.array([(rng.uniform(0.2, 0.8) * w, 0), (rng.uniform(0.2, 0.8) * w, h),
                           (0, rng.uniform(0.2, 0.8) * h), (w, rng.uniform(0.2, 0.8) * h)][side])
    if kind is ShadowKind.HARD:
        height = rng.uniform(0.05, 0.15) * lamp[2]  # an arm just above the page
    else:
        height = rng.uniform(0.3, 0.55) * lamp[2]
    grow = lamp[2] / (lamp[2] - height)  # the silhouette as projected from the lamp's centre
    penumbra = lamp_radius * height / (lamp[2] - height)
    if kind is ShadowKind.SOFT and rng.random() < 0.5:  # a head, entering from the citizen's side
        centre = edge_point + inward * rng.uniform(0.1, 0.35) * min(w, h)
        axes = (rng.uniform(0.12, 0.2) * w * grow / 1.6, rng.uniform(0.15, 0.24) * w * grow / 1.6)
        cv2.ellipse(shadow, (int(centre[0]), int(centre[1])), (int(axes[0]), int(axes[1])),
                    float(rng.uniform(0, 180)), 0, 360, 1.0, -1, cv2.LINE_AA)
        # the shoulders behind it, out of the frame's edge
        _capsule(shadow, edge_point - inward * 60 - inward[::-1] * 200,
                 edge_point - inward * 60 + inward[::-1] * 200, 0.15 * w)
    else:  # an arm reaching towards the page
        tip = target + rng.normal(0, 0.12, 2) * (w, h)
        radius = rng.uniform(0.03, 0.05) * w * grow
        _capsule(shadow, edge_point - inward * 50, tip, radius)
        cv2.circle(shadow, (int(tip[0]), int(tip[1])), int(radius * 1.3), 1.0, -1, cv2.LINE_AA)
    sigma = max(0.6, penumbra / 2.5)
    return np.asarray(cv2.GaussianBlur(shadow, (0, 0), sigma), np.float32)


@dataclass(frozen=True)
class LevelOdds:
    """How a level draws its factors."""

    shadow: float
    """Chance of a head's or an arm's shadow."""
    glare: float
    overlap: float
    curl: float
    """Largest lift of the sheet, pixels at 960 px wide."""
    rotation: float
    """Largest in-plane rotation, degrees."""
    keystone: float
    """Largest camera tilt, degrees."""
    noise: float
    """Read noise, grey levels."""
    blur: float
    """Largest defocus sigma, pixels at 960 px wide."""
    jpeg: tuple[int, int]
    """MJPG quality range."""


ODDS = {
    Level.EASY: LevelOdds(0.0, 0.0, 0.0, 3.0, 12.0, 2.0, 1.5, 0.6, (88, 95)),
    Level.MEDIUM: LevelOdds(0.6, 0.2, 0.15, 8.0, 30.0, 4.0, 3.0, 1.0, (75, 90)),
    Level.HARD: LevelOdds(0.9, 0.45, 0.35, 14.0, 30.0, 6.0, 5.0, 1.4, (60, 80)),
}


MAT_ODDS = {Level.EASY: (0.7, 0.1, 0.1, 0.1), Level.MEDIUM: (0.3, 0.3, 0.2, 0.2),
            Level.HARD: (0.15, 0.35, 0.25, 0.25)}
"""Chances of a dark, light, striped and cluttered mat per level."""


def _place(rng: np.random.Generator, size: tuple[int, int], pw: float, ph: float,
           max_rotation: float, keystone: np.ndarray, rotation: float | None = None
           ) -> tuple[np.ndarray, float]:
    """Corners (on the mat) of a pw x ph paper, rotated, fully inside the frame as the camera
    sees it (``keystone``), with room for a curl."""
    w, h = size
    room = 0.025 * w
    for _ in range(200):
        angle = rng.uniform(-max_rotation, max_rotation)
        angle = angle if rotation is None else rotation
        a = math.radians(angle)
        rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        corners = np.array([[-pw / 2, -ph / 2], [pw / 2, -ph / 2], [pw / 2, ph / 2],
                            [-pw / 2, ph / 2]]) @ rot.T
        span = corners.max(axis=0) - corners.min(axis=0)
        free = np.array([w, h]) * 0.96 - span
        if (free < 0).any():
            pw, ph = pw * 0.95, ph * 0.95
            continue
        centre = np.array([w, h]) * 0.02 + span / 2 + rng.uniform(0, 1, 2) * free
        seen = _project(keystone, corners + centre)
        if (seen < room).any() or (seen[:, 0] > w - room).any() or (seen[:, 1] > h - room).any():
            pw, ph = pw * 0.98, ph * 0.98
            continue
        return corners + centre, angle
    raise ValueError("paper does not fit the frame")


def render_scene2(spec: Spec2) -> Scene2:
    """One frame of the second generator, with its empty-mat reference and ground truth."""
    rng = np.random.default_rng([spec.seed, 17])
    w, h = spec.size
    odds = ODDS[spec.level]
    s = w / 960  # all pixel quantities are given for a 960 px wide frame
    # every factor is drawn, forced or not (a forced factor can still change later draws)
    mat_kind = MatKind(list(MatKind)[int(rng.choice(4, p=MAT_ODDS[spec.level]))])
    mat_kind = spec.mat or mat_kind
    mat = render_mat(rng, spec.size, mat_kind)

    # the paper to find, and perhaps another one partly under it
    card = spec.kind is PageKind.ID_CARD
    if card:
        pw = rng.uniform(0.24, 0.4) * w
        flat = render_card(rng, int(pw * 1.25))
        framed = False
        ph = pw * flat.shape[0] / flat.shape[1]
    else:
        long_px = rng.uniform(0.6, 0.92) * h
        landscape = spec.kind is PageKind.A4_LANDSCAPE
        flat, framed = render_form(rng, int(long_px / (297 / 210) * 1.25), landscape)
        pw, ph = (long_px, long_px * 210 / 297) if landscape else (long_px * 210 / 297, long_px)
    keystone = _keystone(rng, spec.size, odds.keystone)
    on_mat, rotation = _place(rng, spec.size, pw, ph, odds.rotation, keystone, spec.rotation)

    layers: list[tuple[np.ndarray, np.ndarray]] = []  # (flat paper, its corners on the mat)
    overlap = bool(rng.random() < odds.overlap)
    overlap = overlap if spec.overlap is None else spec.overlap
    if overlap:
        other_w = rng.uniform(0.35, 0.6) * w
        other = render_form(rng, int(other_w), bool(rng.random() < 0.5))[0] \
            if rng.random() < 0.7 else render_card(rng, int(other_w * 0.6))
        ow = other_w if other.shape[1] < other.shape[0] * 1.2 else other_w * 0.6 * 1.0
        oh = ow * other.shape[0] / other.shape[1]
        centre = on_mat.mean(axis=0)
        direction = rng.normal(0, 1, 2)
        direction /= np.linalg.norm(direction) + 1e-9
        a = math.radians(rng.uniform(-40, 40))
        rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        o = np.array([[-ow / 2, -oh / 2], [ow / 2, -oh / 2], [ow / 2, oh / 2], [-ow / 2, oh / 2]])
        o = o @ rot.T + centre + direction * (0.5 * max(pw, ph) + 0.15 * max(ow, oh))
        layers.append((other, o))
    layers.append((flat, on_mat))

    # compose albedo and height on the mat
    albedo = mat.copy()
    height_map = np.zeros((h, w), np.float32)
    paper_alpha = np.zeros((h, w), np.float32)
    curl_amount = rng.uniform(0.3, 1.0) * odds.curl * s
    target_lift: np.ndarray = np.zeros((h, w), np.float32)  # both set by the last layer
    target_img = _project(keystone, on_mat)
    for i, (sheet, corners_mat) in enumerate(layers):
        corners_img = _project(keystone, corners_mat)
        fh, fw = sheet.shape[:2]
        src = np.array([[0, 0], [fw, 0], [fw, fh], [0, fh]], np.float32)
        hom = cv2.getPerspectiveTransform(src, corners_img.astype(np.float32))
        lift_flat = _lift(rng, (fh // 4 + 2, fw // 4 + 2), curl_amount)
        lift_flat = cv2.resize(lift_flat, (fw, fh), interpolation=cv2.INTER_LINEAR)
        base = 0.0 if i == 0 else (1.0 * s if overlap else 0.0)  # lying on the other paper
        warped = cv2.warpPerspective(sheet, hom, spec.size, flags=cv2.INTER_AREA)
        alpha = cv2.warpPerspective(np.ones((fh, fw), np.float32), hom, spec.size,
                                    flags=cv2.INTER_LINEAR)
        lift = cv2.warpPerspective(lift_flat + base, hom, spec.size, flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REPLICATE)
        if card:  # rounded corners
            r = max(2, int(3 / 85.6 * pw))
            round_mask = np.zeros((fh, fw), np.uint8)
            rr = int(r * fw / pw)
            cv2.rectangle(round_mask, (rr, 0), (fw - rr, fh), 255, -1)
            cv2.rectangle(round_mask, (0, rr), (fw, fh - rr), 255, -1)
            for cx, cy in ((rr, rr), (fw - rr, rr), (rr, fh - rr), (fw - rr, fh - rr)):
                cv2.circle(round_mask, (cx, cy), rr, 255, -1)
            if i == len(layers) - 1:
                alpha = cv2.warpPerspective(round_mask.astype(np.float32) / 255, hom, spec.size,
                                            flags=cv2.INTER_LINEAR)
        coverage = alpha[..., None]
        albedo = albedo * (1 - coverage) + warped.astype(np.float32) * coverage
        height_map = height_map * (1 - alpha) + lift * alpha
        paper_alpha = np.maximum(paper_alpha, alpha)
        if i == len(layers) - 1:
            target_lift = np.asarray(lift, np.float32)
            target_img = corners_img

    # the lamp: position above the mat, size (radius) of its diffuser
    lamp = np.array([rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h,
                     rng.uniform(1.2, 2.0) * w])
    camera = np.array([w / 2, h / 2, 1.3 * w])
    glare = bool(rng.random() < odds.glare)
    glare = glare if spec.glare is None else spec.glare
    if glare:  # put the lamp where its mirror image in the paper reaches the camera
        spot = target_img.mean(axis=0) + rng.normal(0, 0.15, 2) * (pw, ph)
        # mirror point M = (L_xy * C_z + C_xy * L_z) / (L_z + C_z)  =>  L_xy from M
        lamp[:2] = (spot * (lamp[2] + camera[2]) - camera[:2] * lamp[2]) / camera[2]
    shadow_kind = ShadowKind.NONE
    if rng.random() < odds.shadow:
        shadow_kind = ShadowKind.HARD if rng.random() < 0.3 else ShadowKind.SOFT
    shadow_kind = spec.shadow or shadow_kind
    lamp_radius = rng.uniform(0.08, 0.25) * w if shadow_kind is not ShadowKind.HARD \
        else rng.uniform(0.02, 0.05) * w

    # the sheet's lift: shading by its surface normal, and a shift in the camera's view
    gx = cv2.Sobel(height_map, cv2.CV_32F, 1, 0, ksize=3) / 8
    gy = cv2.Sobel(height_map, cv2.CV_32F, 0, 1, ksize=3) / 8
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    lx, ly, lz = lamp[0] - xx, lamp[1] - yy, lamp[2] - height_map
    dist2 = lx * lx + ly * ly + lz * lz
    cos_in = (-gx * lx - gy * ly + lz) / np.sqrt(dist2 * (1 + gx * gx + gy * gy))
    direct = np.clip(cos_in, 0, 1) * (lamp[2] ** 2 / dist2)
    # the lifted sheet's own shadow on the mat: the sheet seen from the lamp, dropped by its lift
    drop = cv2.GaussianBlur(height_map, (0, 0), 8 * s) / np.maximum(lz, 1)
    sheet_shadow = cv2.remap(paper_alpha, (xx + lx * drop).astype(np.float32),
                             (yy + ly * drop).astype(np.float32), cv2.INTER_LINEAR)
    sheet_shadow = np.clip(sheet_shadow - paper_alpha, 0, 1)
    sheet_shadow = cv2.GaussianBlur(sheet_shadow, (0, 0), 1.5 * s)
    hidden = 0.6 * sheet_shadow
    crosses = False
    if shadow_kind is not ShadowKind.NONE:
        occ = _occluder_shadow(rng, spec.size, lamp, lamp_radius, shadow_kind,
                               target_img.mean(axis=0))
        hidden = np.maximum(hidden, occ)
        inside = cv2.fillConvexPoly(np.zeros((h, w), np.uint8),
                                    np.round(target_img).astype(np.int32), 1).astype(bool)
        covered = float((occ[inside] > 0.5).mean()) if inside.any() else 0.0
        crosses = 0.03 < covered < 0.97
    ambient = rng.uniform(0.15, 0.35)
    exposure = rng.uniform(0.9, 1.1)
    radiance = albedo * (exposure * (ambient + (1 - ambient) * direct * (1 - hidden)))[..., None]
    if glare:  # the lamp's mirror image, a bright lobe on the glossy paper only
        hx, hy = (lamp[:2] * camera[2] + camera[:2] * lamp[2]) / (lamp[2] + camera[2])
        lobe = np.exp(-((xx - hx) ** 2 + (yy - hy) ** 2) / (2 * (rng.uniform(0.03, 0.07) * w) ** 2))
        radiance += (rng.uniform(150, 320) * lobe * paper_alpha * (1 - hidden))[..., None]

    # camera parallax of the lift: a raised point appears further from the image centre
    shift = height_map / (camera[2] - height_map)
    map_x = (xx - (xx - camera[0]) * shift).astype(np.float32)
    map_y = (yy - (yy - camera[1]) * shift).astype(np.float32)
    radiance = cv2.remap(radiance, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    truth = target_img.copy()
    for _ in range(3):  # solve truth = corner + (truth - c) * lift / (C_z - lift)
        xs = np.clip(truth[:, 0], 0, w - 1).astype(int)
        ys = np.clip(truth[:, 1], 0, h - 1).astype(int)
        z = target_lift[ys, xs].astype(np.float64)
        truth = target_img + (target_img - camera[:2]) * (z / (camera[2] - z))[:, None]

    frame = _camera(rng, radiance, odds, s)
    empty = mat * (exposure * (ambient + (1 - ambient) * np.clip(
        lamp[2] / np.sqrt((lamp[0] - xx) ** 2 + (lamp[1] - yy) ** 2 + lamp[2] ** 2), 0, 1) * (
        lamp[2] ** 2 / ((lamp[0] - xx) ** 2 + (lamp[1] - yy) ** 2 + lamp[2] ** 2))))[..., None]
    reference = _camera(rng, empty, odds, s)
    factors = Factors(mat_kind, shadow_kind, crosses, framed, glare, overlap,
                      round(float(rotation), 1), round(float(curl_amount), 1))
    return Scene2(frame, order_corners(truth), spec.kind, reference, spec, factors, flat)


def _camera(rng: np.random.Generator, radiance: np.ndarray, odds: LevelOdds,
            s: float) -> np.ndarray:
    """What a UVC camera makes of the light: vignetting, defocus, noise, MJPG."""
    h, w = radiance.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - w / 2) ** 2 + (yy - h / 2) ** 2) / (w * w)
    image = radiance * (1 / (1 + 0.9 * r2) ** 2)[..., None]
    image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.4, odds.blur) * s)
    sigma = odds.noise
    noise = rng.normal(0, 1, image.shape).astype(np.float32)
    image = image + noise * np.sqrt(sigma ** 2 + 0.04 * np.clip(image, 0, 255))
    image8 = np.clip(image, 0, 255).astype(np.uint8)
    low, high = odds.jpeg
    ok, buf = cv2.imencode(".jpg", image8, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(low, high))])
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else None
    return image8 if decoded is None else np.asarray(decoded)


KINDS = (PageKind.A4_PORTRAIT, PageKind.A4_LANDSCAPE, PageKind.ID_CARD, PageKind.A4_PORTRAIT)
LEVELS = (Level.EASY, Level.MEDIUM, Level.MEDIUM, Level.HARD)


def scene_set2(count: int, split: Split, *, size: tuple[int, int] = (960, 720)) -> list[Spec2]:
    """``count`` scenes of one split, mixed over levels and kinds; even seeds tune, odd seeds
    are held out."""
    parity = 0 if split is Split.TUNE else 1
    return [Spec2(2 * i + parity, LEVELS[i % 4], KINDS[(i // 4) % 4], size) for i in range(count)]
