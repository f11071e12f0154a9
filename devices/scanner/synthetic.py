"""SIMULATED document camera: pages on mats with perspective, light, shadow, blur, glare, hands.

Every scene carries its ground truth: the page's four corners in image pixels (clockwise from
top-left), the page kind, and the empty-mat reference frame a real kiosk records at install.
Scenes are deterministic in their seed. ``SimulatedDocumentCamera`` animates scenes over time
(empty mat, a page carried in by a hand, laid down, the hand leaving) as a camera source.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

import cv2
import numpy as np

from devices.scanner.geometry import PageKind, order_corners

WORDS = ("application", "residence", "insurance", "medical", "housing", "fund", "loan",
         "certificate", "authorisation", "agent", "Yongjia", "Shengze", "county", "centre",
         "record", "proof", "deposit", "withdrawal", "2026", "No.", "signature", "date")


class Difficulty(StrEnum):
    EASY = "easy"
    MEDIUM = "medium"
    HARD = "hard"


@dataclass(frozen=True)
class SceneSpec:
    """What to render."""

    seed: int
    difficulty: Difficulty = Difficulty.MEDIUM
    kind: PageKind = PageKind.A4_PORTRAIT
    size: tuple[int, int] = (960, 720)
    """Frame width and height in pixels."""
    hand: bool | None = None
    """Force a hand in (True) or out (False); None lets the difficulty decide."""
    offset: tuple[float, float] = (0.0, 0.0)
    """Shift of the page, as fractions of the frame (a page being carried in)."""
    page: bool = True
    """False renders the empty mat only."""


@dataclass
class Scene:
    """A rendered frame with its ground truth."""

    image: np.ndarray
    corners: np.ndarray | None
    kind: PageKind
    reference: np.ndarray
    spec: SceneSpec
    page: np.ndarray | None = field(default=None, repr=False)
    """The flat page as rendered (for checking corrected output)."""


# -- pages -----------------------------------------------------------------------------------

def _text_line(img: np.ndarray, rng: np.random.Generator, x: int, y: int, width: int,
               scale: float, thickness: int, colour: tuple[int, int, int]) -> None:
    cursor = x
    while True:
        word = str(rng.choice(WORDS))
        (w, _), _ = cv2.getTextSize(word, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        if cursor + w > x + width:
            break
        cv2.putText(img, word, (cursor, y), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thickness,
                    cv2.LINE_AA)
        cursor += w + int(12 * scale)


def _stamp(img: np.ndarray, rng: np.random.Generator, centre: tuple[int, int],
           radius: int) -> None:
    overlay = img.copy()
    red = (40, 40, int(rng.integers(190, 230)))
    cv2.circle(overlay, centre, radius, red, max(2, radius // 12), cv2.LINE_AA)
    cv2.drawMarker(overlay, centre, red, cv2.MARKER_STAR, radius // 2, max(2, radius // 14))
    cv2.putText(overlay, "SEAL", (centre[0] - radius // 2, centre[1] + radius // 2),
                cv2.FONT_HERSHEY_SIMPLEX, radius / 60, red, max(1, radius // 25), cv2.LINE_AA)
    cv2.addWeighted(overlay, 0.8, img, 0.2, 0, img)


def render_a4(rng: np.random.Generator, width: int) -> np.ndarray:
    """A portrait A4 page, ``width`` pixels wide: title, text lines, a table, a red stamp."""
    height = round(width * 297 / 210)
    paper = tuple(int(v) for v in rng.integers(236, 252, size=3))
    img = np.full((height, width, 3), paper, np.uint8)
    unit = width / 210  # pixels per millimetre
    margin = int(20 * unit)
    r, g, b = (int(v) for v in rng.integers(10, 50, size=3))
    ink = (r, g, b)
    scale = 0.028 * unit * 4.2
    _text_line(img, rng, margin + int(30 * unit), margin + int(10 * unit),
               width - 2 * margin - int(60 * unit), scale * 1.6, max(1, int(unit * 0.8)), ink)
    y = margin + int(28 * unit)
    line_gap = int(8 * unit)
    table_at = int(rng.integers(4, 12))
    for i in range(int(rng.integers(14, 26))):
        if y > height - margin - int(40 * unit):
            break
        if i == table_at:
            rows, cols = int(rng.integers(3, 6)), int(rng.integers(2, 5))
            tw, th = width - 2 * margin, rows * line_gap
            for r in range(rows + 1):
                cv2.line(img, (margin, y + r * line_gap), (margin + tw, y + r * line_gap), ink,
                         max(1, int(unit * 0.3)))
            for c in range(cols + 1):
                cx = margin + c * tw // cols
                cv2.line(img, (cx, y), (cx, y + th), ink, max(1, int(unit * 0.3)))
            y += th + line_gap
            continue
        line_width = width - 2 * margin - (int(rng.integers(0, 60) * unit) if i % 5 == 4 else 0)
        _text_line(img, rng, margin, y + int(5 * unit), line_width, scale,
                   max(1, int(unit * 0.35)), ink)
        y += line_gap
    _stamp(img, rng, (width - margin - int(35 * unit), height - margin - int(35 * unit)),
           int(20 * unit))
    return img


def render_id_card(rng: np.random.Generator, width: int, back: bool = False) -> np.ndarray:
    """A fictional card of ID-1 size (85.6 x 54 mm), ``width`` pixels wide."""
    height = round(width * 54 / 85.6)
    unit = width / 85.6
    base = np.array([235, 225, 200] if not back else [215, 230, 235], np.float32)
    ramp = np.linspace(0.92, 1.05, width, dtype=np.float32)[None, :, None]
    img = np.clip(np.ones((height, width, 3), np.float32) * base * ramp, 0, 255).astype(np.uint8)
    ink = (30, 30, 30)
    if back:
        cv2.circle(img, (int(14 * unit), int(14 * unit)), int(9 * unit), (40, 40, 200), -1,
                   cv2.LINE_AA)
        for i in range(2):
            _text_line(img, rng, int(28 * unit), int((12 + 8 * i) * unit), int(50 * unit),
                       0.09 * unit, max(1, int(unit * 0.4)), ink)
        for i in range(2):
            _text_line(img, rng, int(20 * unit), int((40 + 6 * i) * unit), int(60 * unit),
                       0.06 * unit, max(1, int(unit * 0.25)), ink)
    else:
        photo = (int(58 * unit), int(9 * unit), int(82 * unit), int(40 * unit))
        cv2.rectangle(img, photo[:2], photo[2:], (200, 200, 205), -1)
        cv2.ellipse(img, ((photo[0] + photo[2]) // 2, int(22 * unit)),
                    (int(7 * unit), int(9 * unit)), 0, 0, 360, (120, 150, 190), -1, cv2.LINE_AA)
        for i in range(6):
            _text_line(img, rng, int(6 * unit), int((9 + 7 * i) * unit), int(48 * unit),
                       0.05 * unit, max(1, int(unit * 0.2)), ink)
    radius = int(3 * unit)
    mask = np.zeros((height, width), np.uint8)
    cv2.rectangle(mask, (radius, 0), (width - radius, height), 255, -1)
    cv2.rectangle(mask, (0, radius), (width, height - radius), 255, -1)
    for cx, cy in ((radius, radius), (width - radius, radius), (radius, height - radius),
                   (width - radius, height - radius)):
        cv2.circle(mask, (cx, cy), radius, 255, -1, cv2.LINE_AA)
    img[mask == 0] = 0
    return np.asarray(img)


# -- the scene ---------------------------------------------------------------------------------

MATS = {
    Difficulty.EASY: [(25, 60, 25), (30, 30, 30), (60, 45, 20)],
    Difficulty.MEDIUM: [(25, 60, 25), (30, 30, 30), (60, 45, 20), (90, 90, 90), (40, 70, 110)],
    Difficulty.HARD: [(30, 30, 30), (120, 120, 120), (150, 150, 145), (60, 90, 60),
                      (170, 175, 180)],
}


def render_mat(rng: np.random.Generator, size: tuple[int, int], difficulty: Difficulty,
               texture: np.random.Generator | None = None) -> np.ndarray:
    w, h = size
    colours = MATS[difficulty]
    colour = np.array(colours[int(rng.integers(len(colours)))], np.float32)
    ruler = rng.random() < 0.5
    texture = texture or rng
    grain = cv2.GaussianBlur(texture.normal(0, 6, (121, 161)).astype(np.float32), (0, 0), 1.5)
    grain = cv2.resize(grain, (w, h), interpolation=cv2.INTER_LINEAR)
    mat = colour[None, None, :] + grain[..., None]
    if ruler:  # a printed ruler along one edge, as many mats have
        tick, y0 = max(1, w // 960), h - max(4, h // 60)
        for x in range(0, w, max(8, w // 96)):
            mat[y0 - max(8, h // 90):y0, x:x + tick] += 60
    return np.asarray(np.clip(mat, 0, 255), np.uint8)


def _lighting(rng: np.random.Generator, size: tuple[int, int], strength: float) -> np.ndarray:
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    ramp = (np.cos(angle) * xx / w + np.sin(angle) * yy / h)
    ramp = (ramp - ramp.min()) / max(1e-6, float(ramp.max() - ramp.min()))
    cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
    vignette = 1 - 0.5 * (((xx - cx) / w) ** 2 + ((yy - cy) / h) ** 2)
    field_ = (1 - strength / 2 + strength * ramp * 0.5 + strength * 0.5 * (vignette - 0.75))
    return np.asarray(field_, np.float32)


def _shadow(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    w, h = size
    mask: np.ndarray = np.zeros((h, w), np.float32)
    x0 = rng.uniform(0.3, 0.9) * w
    pts = np.array([[x0, 0], [x0 + rng.uniform(-0.3, 0.3) * w, h], [w, h], [w, 0]], np.int32)
    cv2.fillPoly(mask, [pts], 1.0)
    mask = cv2.GaussianBlur(mask, (0, 0), max(3.0, w / 60))
    return np.asarray(1 - rng.uniform(0.25, 0.45) * mask, np.float32)


def _hand(img: np.ndarray, rng: np.random.Generator, target: np.ndarray) -> None:
    """A skin-coloured hand and forearm reaching in from the bottom edge towards ``target``."""
    h, w = img.shape[:2]
    skin = tuple(int(v) for v in rng.integers([95, 130, 175], [135, 170, 225]))
    tx, ty = float(target[0]), float(target[1])
    base = (int(np.clip(tx + rng.uniform(-0.1, 0.1) * w, 0, w)), h + 20)
    scale = w / 960
    cv2.line(img, base, (int(tx), int(ty)), skin, int(70 * scale), cv2.LINE_AA)
    cv2.ellipse(img, (int(tx), int(ty)), (int(45 * scale), int(35 * scale)), 0, 0, 360, skin, -1,
                cv2.LINE_AA)
    for i in range(4):
        angle = -math.pi / 2 + (i - 1.5) * 0.3
        fx = int(tx + math.cos(angle) * 75 * scale)
        fy = int(ty + math.sin(angle) * 75 * scale)
        cv2.line(img, (int(tx), int(ty)), (fx, fy), skin, int(16 * scale), cv2.LINE_AA)


def _tilted(corners: np.ndarray, ax: float, ay: float, focal: float) -> np.ndarray:
    """Project page corners seen by a camera tilted by ax, ay (a real keystone)."""
    pts = np.column_stack([corners, np.zeros(len(corners))])
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    pts = pts @ (ry @ rx).T
    depth = focal + pts[:, 2]
    return np.asarray(focal * pts[:, :2] / depth[:, None])


def place_quad(rng: np.random.Generator, size: tuple[int, int], page_w: float, page_h: float,
               difficulty: Difficulty) -> np.ndarray:
    """Destination corners of a page of page_w x page_h (pixels) in a frame of ``size``."""
    w, h = size
    max_angle = {Difficulty.EASY: 8, Difficulty.MEDIUM: 30, Difficulty.HARD: 180}[difficulty]
    tilt = {Difficulty.EASY: 0.0, Difficulty.MEDIUM: 5.0, Difficulty.HARD: 9.0}[difficulty]
    for _ in range(200):
        angle = math.radians(rng.uniform(-max_angle, max_angle))
        corners = np.array([[-page_w / 2, -page_h / 2], [page_w / 2, -page_h / 2],
                            [page_w / 2, page_h / 2], [-page_w / 2, page_h / 2]])
        rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        corners = corners @ rot.T
        corners = _tilted(corners, math.radians(rng.uniform(-tilt, tilt)),
                          math.radians(rng.uniform(-tilt, tilt)), focal=1.2 * w)
        span = corners.max(axis=0) - corners.min(axis=0)
        margin = 0.0125 * w
        free = np.array([w, h]) - span - 2 * margin
        if (free < 0).any():
            continue
        offset = -corners.min(axis=0) + margin + rng.uniform(0, 1, 2) * free
        return np.asarray(corners + offset)
    raise ValueError("page does not fit the frame")


def render_scene(spec: SceneSpec) -> Scene:
    """One frame with ground truth."""
    # geometry and light come from one stream, drawn in the same order at every frame size,
    # so that a preview and a full-resolution still of one scene agree; page content and
    # sensor texture have streams of their own
    rng = np.random.default_rng(spec.seed)
    content = np.random.default_rng(spec.seed + 1_000_003)
    texture = np.random.default_rng(spec.seed + 2_000_029)
    w, h = spec.size
    diff = spec.difficulty
    mat = render_mat(rng, spec.size, diff, texture)
    if spec.kind == PageKind.ID_CARD:
        fill = rng.uniform(0.28, 0.4)
        page_w_px = fill * w
        back = bool(rng.random() < 0.5)
        flat = render_id_card(content, max(200, int(page_w_px * 1.3)), back=back)
    else:
        low, high = {Difficulty.EASY: (0.62, 0.78), Difficulty.MEDIUM: (0.55, 0.8),
                     Difficulty.HARD: (0.45, 0.85)}[diff]
        page_h_px = rng.uniform(low, high) * h
        flat = render_a4(content, max(300, int(page_h_px * 210 / 297 * 1.3)))
        if spec.kind == PageKind.A4_LANDSCAPE:
            flat = cv2.rotate(flat, cv2.ROTATE_90_CLOCKWISE)
    fh, fw = flat.shape[:2]
    scale = (fill * w / fw) if spec.kind == PageKind.ID_CARD else (page_h_px / max(fh, fw))
    dst = place_quad(rng, spec.size, fw * scale, fh * scale, diff)
    dst = dst + np.array(spec.offset) * np.array(spec.size)
    src = np.array([[0, 0], [fw - 1, 0], [fw - 1, fh - 1], [0, fh - 1]], np.float32)
    homography = cv2.getPerspectiveTransform(src, dst.astype(np.float32))
    warped = cv2.warpPerspective(flat, homography, spec.size, flags=cv2.INTER_AREA)
    alpha = cv2.warpPerspective(np.full((fh, fw), 255, np.uint8), homography, spec.size,
                                flags=cv2.INTER_LINEAR)
    if spec.kind == PageKind.ID_CARD:  # rounded corners: black outside the card
        alpha = np.where((warped.max(axis=2) == 0) & (alpha > 250), 0, alpha).astype(np.uint8)
    if not spec.page:
        alpha[:] = 0
    a = (alpha.astype(np.float32) / 255)[..., None]
    frame: np.ndarray = mat.astype(np.float32) * (1 - a) + warped.astype(np.float32) * a
    # a soft drop shadow under the page edge makes it look laid down, as real paper does
    light_strength = {Difficulty.EASY: 0.15, Difficulty.MEDIUM: 0.35, Difficulty.HARD: 0.6}[diff]
    light = _lighting(rng, spec.size, light_strength)
    reference = mat.astype(np.float32) * light[..., None]
    frame *= light[..., None]
    if diff != Difficulty.EASY and rng.random() < (0.4 if diff == Difficulty.MEDIUM else 0.7):
        shade = _shadow(rng, spec.size)
        frame *= shade[..., None]
    glare = diff == Difficulty.HARD and rng.random() < 0.5
    if glare:
        centre = dst.mean(axis=0) + rng.normal(0, 0.15, 2) * np.array([w, h]) * 0.5
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        sigma = rng.uniform(0.03, 0.07) * w
        blob = np.exp(-((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / (2 * sigma ** 2))
        frame += (blob * rng.uniform(160, 260))[..., None]
    frame = np.clip(frame, 0, 255).astype(np.uint8)
    want_hand = spec.page and (spec.hand if spec.hand is not None else (
        diff == Difficulty.HARD and rng.random() < 0.35))
    if want_hand:
        # the hand holds the page near the middle of its bottom edge
        bottom = dst[np.argsort(dst[:, 1])[-2:]].mean(axis=0)
        _hand(frame, rng, bottom + np.array([0, rng.uniform(0.02, 0.06) * h]))
    blur = {Difficulty.EASY: 0.0, Difficulty.MEDIUM: 0.8, Difficulty.HARD: 1.4}[diff]
    if blur:  # the blur is an optical one: proportional to the frame size
        frame = cv2.GaussianBlur(frame, (0, 0), rng.uniform(0.3, blur) * w / 960)
    noise = {Difficulty.EASY: 1.5, Difficulty.MEDIUM: 3.0, Difficulty.HARD: 5.0}[diff]
    frame = np.clip(frame.astype(np.float32) + texture.normal(0, noise, frame.shape), 0,
                    255).astype(np.uint8)
    if diff == Difficulty.HARD:
        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 65])
        decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else None
        frame = frame if decoded is None else decoded
    gain = 1 + (rng.normal(0, 0.03) if diff != Difficulty.EASY else 0)
    ref = np.clip(reference * gain + texture.normal(0, noise, reference.shape), 0, 255)
    corners = order_corners(dst) if spec.page else None
    return Scene(frame, corners, spec.kind, ref.astype(np.uint8), spec, flat)


def scene_set(count: int, *, size: tuple[int, int] = (960, 720), seed: int = 0) -> list[SceneSpec]:
    """A mixed set across difficulties and page kinds, deterministic in ``seed``."""
    kinds = [PageKind.A4_PORTRAIT, PageKind.A4_PORTRAIT, PageKind.A4_LANDSCAPE, PageKind.ID_CARD]
    diffs = [Difficulty.EASY, Difficulty.MEDIUM, Difficulty.MEDIUM, Difficulty.HARD]
    return [SceneSpec(seed * 100_000 + i, diffs[i % len(diffs)], kinds[(i // 4) % len(kinds)],
                      size) for i in range(count)]


class SimulatedDocumentCamera:
    """SIMULATED camera: an empty mat, a page carried in by a hand, laid down, the hand
    leaving, the page resting; then the page is taken away and the next one comes.

    ``frame(t)`` renders the view at ``t`` seconds; resting frames are rendered once and
    re-used with fresh sensor noise, so the simulator keeps up with a preview rate.
    """

    PHASES = (("empty", 1.0), ("carry", 1.0), ("settle", 0.5), ("rest", 3.5))

    def __init__(self, seed: int = 1, *, size: tuple[int, int] = (960, 720),
                 difficulty: Difficulty = Difficulty.EASY,
                 kinds: tuple[PageKind, ...] = (PageKind.A4_PORTRAIT, PageKind.ID_CARD,
                                                PageKind.ID_CARD, PageKind.A4_LANDSCAPE)) -> None:
        self.seed = seed
        self.size = size
        self.difficulty = difficulty
        self.kinds = kinds
        self.period = sum(d for _, d in self.PHASES)
        self._cache: dict[tuple[int, str, tuple[int, int]], Scene] = {}
        self._noise = np.random.default_rng(seed)
        self._fields: dict[tuple[int, ...], list[np.ndarray]] = {}

    def spec(self, cycle: int, size: tuple[int, int] | None = None, **changes: object
             ) -> SceneSpec:
        kind = self.kinds[cycle % len(self.kinds)]
        base = SceneSpec(self.seed * 1000 + cycle, self.difficulty, kind, size or self.size,
                         hand=False)
        return SceneSpec(**{**base.__dict__, **changes})

    def phase(self, t: float) -> tuple[int, str, float]:
        """Cycle number, phase name, and progress (0..1) within the phase at time t."""
        cycle, within = divmod(t, self.period)
        for name, duration in self.PHASES:
            if within < duration:
                return int(cycle), name, within / duration
            within -= duration
        return int(cycle), "rest", 1.0

    def _cached(self, cycle: int, name: str, size: tuple[int, int]) -> Scene:
        key = (cycle, name, size)
        if key not in self._cache:
            if len(self._cache) > 16:
                self._cache.clear()
            changes: dict[str, object] = {"page": name != "empty", "hand": name == "settle"}
            self._cache[key] = render_scene(self.spec(cycle, size, **changes))
        return self._cache[key]

    def scene(self, t: float, size: tuple[int, int] | None = None) -> Scene:
        """The scene (with ground truth) at time t."""
        size = size or self.size
        cycle, name, progress = self.phase(t)
        if name == "carry":
            # four positions on the way in (a render costs ~0.2 s at 960x720): the page still
            # arrives moving, with the hand, and the simulator keeps a preview rate
            step = min(3, int(progress * 4))
            key = (cycle, f"carry{step}", size)
            if key not in self._cache:
                if len(self._cache) > 16:
                    self._cache.clear()
                offset = (0.0, 0.7 * (1 - step / 4))
                self._cache[key] = render_scene(self.spec(cycle, size, hand=True,
                                                          offset=offset))
            return self._cache[key]
        return self._cached(cycle, name, size)

    def frame(self, t: float, size: tuple[int, int] | None = None) -> np.ndarray:
        """The camera image at time t, with sensor noise (previews: one of eight fields drawn
        once per size, so that a stream costs a lookup, not a random draw per pixel)."""
        image = self.scene(t, size).image
        if image.size > 3_000_000:  # a full-resolution still: drawn fresh, not kept
            fresh = self._noise.integers(-2, 3, size=image.shape, dtype=np.int16)
            return np.asarray(np.clip(image.astype(np.int16) + fresh, 0, 255), np.uint8)
        fields = self._fields.get(image.shape)
        if fields is None:
            fields = [self._noise.integers(-2, 3, size=image.shape, dtype=np.int16)
                      for _ in range(8)]
            self._fields[image.shape] = fields
        noise = fields[int(self._noise.integers(0, len(fields)))]
        return np.asarray(np.clip(image.astype(np.int16) + noise, 0, 255), np.uint8)

    def reference(self, size: tuple[int, int] | None = None) -> np.ndarray:
        """The empty mat, as recorded at install."""
        return self._cached(0, "empty", size or self.size).image
