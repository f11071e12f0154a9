"""Finding the page quadrilateral in a document camera frame: the paper, not the strongest edge.

A fixed overhead camera allows what a phone scanner cannot: a reference frame of the empty mat,
recorded at install (``tongban devices scanner reference``). Work is on a downscaled frame and
on the logarithm of its brightness, where a shadow shifts both sides of an edge alike.
Candidates come from masks (difference to the reference, paper brightness, edges) and from the
closed outlines of edges in the log image and in its ratio to the reference, with quads from
four long straight stretches of an outline that is no quad. Each candidate is scored by how
much of each side steps from lighter inside to darker outside (less where the step runs on past
the corners, as a shadow's edge does), its shape and its aspect; the best few are refined by
fitting each side to the edge (sub-pixel, robust to a hand or a shadow over part of a side),
grown outward over paper to the outermost edge (a form's frame is not the sheet's edge), and
the outermost well-supported quad wins.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from devices.scanner.geometry import (
    A4_ASPECT,
    ID_CARD_ASPECT,
    PageKind,
    classify,
    corrected_size,
    iou,
    is_convex,
    order_corners,
    quad_area,
)

WORK_WIDTH = 480
"""Width of the downscaled frame where candidates are sought."""
STEP_MIN = 5.0
"""Smallest step (100 x log units: 5 is a 5 % change of brightness) across a side for a point
of it to count as on the paper's edge."""
PAPER_TOLERANCE = 12.0
"""How much darker (100 x log units) a band may be than the page inside and still be paper."""
REFINED_CANDIDATES = 4
"""How many of the best distinct candidates are refined and scored again."""
OUTER_SCORE_RATIO = 0.85
"""A quad around the best one wins if it scores at least this share of the best score."""
EXTENSION_PENALTY = 0.6
"""How much a side loses for each share of its extension past the corners that steps too."""
STEP_OFFSET = 3.0
"""How far inside and outside a side (work pixels) the step is measured."""
_LOG_TABLE = np.log(np.arange(256, dtype=np.float32) + 8)
_MEAN3 = np.full((1, 3), 1 / 3, np.float32)
_SHADE_TABLE = (100 * np.log(np.arange(256, dtype=np.float32) + 20)).astype(np.float32)
"""Grey level to 100 x log: a shadow multiplies the light, so in this scale it shifts both
sides of a paper's edge alike and the edge's step stays what the paper and the mat make it.
The offset keeps the noise of dark pixels from being magnified into edges."""


@dataclass
class Detection:
    """The page found in one frame (corners in that frame's pixels), or not."""

    found: bool
    corners: np.ndarray | None = None
    score: float = 0.0
    kind: PageKind = PageKind.OTHER
    source: str = ""
    """Which candidate generator won: reference, reference-edges, shade-edges, brightness,
    edges."""
    ms: float = 0.0
    side_support: list[float] = field(default_factory=list)


def _to_gray(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image


def _quad_from_contour(contour: np.ndarray) -> np.ndarray | None:
    hull = cv2.convexHull(contour)
    peri = cv2.arcLength(hull, True)
    for eps in (0.01, 0.02, 0.03, 0.045, 0.06, 0.08):
        approx = cv2.approxPolyDP(hull, eps * peri, True)
        if len(approx) == 4:
            return approx.reshape(4, 2).astype(np.float64)
        if len(approx) < 4:
            break
    rect = cv2.minAreaRect(hull)
    return cv2.boxPoints(rect).astype(np.float64)


def _contours_to_quads(mask: np.ndarray, min_area: float, limit: int = 3) -> list[np.ndarray]:
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    contours = sorted(contours, key=cv2.contourArea, reverse=True)[:limit]
    quads = []
    for c in contours:
        if cv2.contourArea(c) < min_area:
            break
        quad = _quad_from_contour(c)
        if quad is not None:
            quads.append(quad)
    return quads


def _log_edges(log_image: np.ndarray, low: float = 8.0, high: float = 18.0) -> np.ndarray:
    """Canny on a log image (thresholds in 100 x log units: a step of 0.1 is about 10)."""
    blurred = cv2.GaussianBlur(log_image, (0, 0), 1.0)
    dx = cv2.Sobel(blurred, cv2.CV_16S, 1, 0, ksize=3)
    dy = cv2.Sobel(blurred, cv2.CV_16S, 0, 1, ksize=3)
    return cv2.Canny(dx, dy, low, high, L2gradient=True)


def _outline_quads(edges: np.ndarray, min_area: float, limit: int = 4) -> list[np.ndarray]:
    """Quads from an edge map: the regions that closed outlines enclose (the inside of a
    page's outline, whatever touches it from outside), the filled outer outlines, and for an
    outline that is no quad (a page over another paper, a shadow joined to it) quads of
    four of its long straight stretches."""
    edges = cv2.dilate(edges, cv2.getStructuringElement(cv2.MORPH_RECT, (3, 3)))
    contours, hierarchy = cv2.findContours(edges, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if len(contours) == 0:
        return []
    holes = [c for c, hier in zip(contours, hierarchy[0], strict=True) if hier[3] >= 0]
    outer = [c for c, hier in zip(contours, hierarchy[0], strict=True) if hier[3] < 0]
    quads = []
    for group in (holes, outer):
        for c in sorted(group, key=cv2.contourArea, reverse=True)[:limit]:
            if cv2.contourArea(c) < min_area:
                break
            quad = _quad_from_contour(c)
            if quad is not None:
                quads.append(quad)
                if cv2.contourArea(c) < 0.93 * quad_area(quad) or group is outer:
                    quads += _stretch_quads(c, min_area)
    return quads


def _stretch_quads(contour: np.ndarray, min_area: float, stretches: int = 7) -> list[np.ndarray]:
    """Quads bounded by the lines of four of the contour's longest straight stretches, taken
    in the contour's order."""
    peri = cv2.arcLength(contour, True)
    poly = cv2.approxPolyDP(contour, 0.01 * peri, True).reshape(-1, 2).astype(np.float64)
    if len(poly) <= 4:
        return []
    ends = np.roll(poly, -1, axis=0)
    lengths = np.linalg.norm(ends - poly, axis=1)
    keep = np.sort(np.argsort(lengths)[::-1][:stretches])
    keep = keep[lengths[keep] > 0.05 * peri]
    if len(keep) < 4:
        return []
    combos = np.array(list(itertools.combinations(keep, 4)))  # combo, side
    p = poly[combos]
    d = ends[combos] - p
    # corner i is where side i-1 meets side i: p1 + s d1 = p2 + u d2
    p1, d1 = np.roll(p, 1, axis=1), np.roll(d, 1, axis=1)
    cross = d1[..., 0] * d[..., 1] - d1[..., 1] * d[..., 0]
    diff = p - p1
    with np.errstate(divide="ignore", invalid="ignore"):  # parallel sides are dropped below
        along = (diff[..., 0] * d[..., 1] - diff[..., 1] * d[..., 0]) / cross
        corners = p1 + along[..., None] * d1
    parallel = np.abs(cross) < 0.05 * np.linalg.norm(d1, axis=-1) * np.linalg.norm(d, axis=-1)
    quads = []
    for quad, bad in zip(corners, parallel.any(axis=1), strict=True):
        if not bad and is_convex(quad) and quad_area(quad) >= min_area:
            quads.append(quad)
    return quads


def _sample(image: np.ndarray, points: np.ndarray, border: int = cv2.BORDER_REPLICATE,
            border_value: float = 0.0) -> np.ndarray:
    """Bilinear samples of a one-channel image at float (x, y) points (any leading shape)."""
    flat = np.asarray(points, np.float32).reshape(1, -1, 2)
    values = cv2.remap(image, np.ascontiguousarray(flat[..., 0]),
                       np.ascontiguousarray(flat[..., 1]), cv2.INTER_LINEAR,
                       borderMode=border, borderValue=border_value)
    return np.asarray(values).reshape(points.shape[:-1])


def _contains(outer: np.ndarray, inner: np.ndarray, tolerance: float = 2.0) -> bool:
    """Whether every corner of ``inner`` lies inside ``outer`` (or within ``tolerance`` px)."""
    contour = np.asarray(outer, np.float32).reshape(-1, 1, 2)
    return all(cv2.pointPolygonTest(contour, (float(x), float(y)), True) >= -tolerance
               for x, y in inner)


def _skin_mask(work: np.ndarray) -> np.ndarray:
    """Hands and arms (skin tones in YCrCb), dilated a little."""
    ycrcb = cv2.cvtColor(work, cv2.COLOR_BGR2YCrCb)
    skin = cv2.inRange(ycrcb, (40, 138, 80), (255, 178, 125))
    skin = cv2.morphologyEx(skin, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    return cv2.dilate(skin, np.ones((5, 5), np.uint8))


def _glare_mask(work: np.ndarray) -> np.ndarray:
    """Clipped highlights (a lamp's reflection), which belong to neither page nor mat."""
    gray = cv2.cvtColor(work, cv2.COLOR_BGR2GRAY)
    clipped = cv2.inRange(gray, 248, 255)
    clipped = cv2.morphologyEx(clipped, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    return cv2.dilate(clipped, np.ones((9, 9), np.uint8))


class PageDetector:
    """Detects the page; give it the empty-mat reference frame when the kiosk has one."""

    def __init__(self, reference: np.ndarray | None = None, *,
                 min_area_fraction: float = 0.02, max_area_fraction: float = 0.97) -> None:
        self.min_area_fraction = min_area_fraction
        self.max_area_fraction = max_area_fraction
        self._reference_work: np.ndarray | None = None
        self._reference_log: np.ndarray | None = None
        self._reference_shape: tuple[int, int] | None = None
        if reference is not None:
            self.set_reference(reference)

    def set_reference(self, reference: np.ndarray) -> None:
        """Record the empty mat (any resolution of the same camera view)."""
        work, _ = self._downscale(reference)
        self._reference_work = cv2.LUT(cv2.GaussianBlur(work, (5, 5), 0), _LOG_TABLE)
        self._reference_log = cv2.LUT(_to_gray(work), _SHADE_TABLE)
        self._reference_shape = reference.shape[:2]

    @property
    def has_reference(self) -> bool:
        return self._reference_work is not None

    @staticmethod
    def _downscale(image: np.ndarray) -> tuple[np.ndarray, float]:
        h, w = image.shape[:2]
        scale = WORK_WIDTH / w
        if scale >= 1:
            return image, 1.0
        size = (WORK_WIDTH, round(h * scale))
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale

    # -- candidates ---------------------------------------------------------------------------

    def _reference_masks(self, work: np.ndarray) -> list[np.ndarray] | None:
        """Where the frame differs from the empty mat as a page would: brighter, or another
        colour. A shadow only darkens the mat evenly and so is not a difference."""
        ref = self._reference_work
        if ref is None or ref.shape != work.shape:
            return None
        blurred = cv2.GaussianBlur(work, (5, 5), 0)
        log_ratio: np.ndarray = cv2.subtract(cv2.LUT(blurred, _LOG_TABLE), ref)
        # compensate an exposure change since the reference was taken
        log_ratio -= float(np.median(log_ratio[::4, ::4]))
        brighter = cv2.transform(log_ratio, _MEAN3)
        chroma = cv2.absdiff(log_ratio, cv2.merge([brighter, brighter, brighter]))
        chroma = cv2.max(cv2.max(chroma[..., 0], chroma[..., 1]), chroma[..., 2])
        change8 = cv2.convertScaleAbs(cv2.max(brighter, 2 * chroma), alpha=255)
        otsu, _ = cv2.threshold(change8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
        not_skin = cv2.bitwise_not(cv2.bitwise_or(_skin_mask(work), _glare_mask(work)))
        masks = []
        # a looser cut keeps a page's shadowed part, a stricter one sheds glare
        for level in (max(otsu * 0.45, 12.0), max(otsu, 20.0), max(otsu, 20.0) * 1.6):
            _, mask = cv2.threshold(change8, level, 255, cv2.THRESH_BINARY)
            mask = cv2.bitwise_and(mask, not_skin)
            if cv2.countNonZero(mask) == 0:
                continue
            masks.append(cv2.morphologyEx(cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel),
                                          cv2.MORPH_CLOSE, kernel))
        return masks or None

    @staticmethod
    def _brightness_mask(work: np.ndarray) -> np.ndarray:
        hsv = cv2.cvtColor(work, cv2.COLOR_BGR2HSV)
        paper = cv2.subtract(hsv[..., 2], hsv[..., 1])  # bright and unsaturated
        paper = cv2.GaussianBlur(paper, (5, 5), 0)
        _, mask = cv2.threshold(paper, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
        return cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)

    @staticmethod
    def _edge_mask(gray: np.ndarray) -> np.ndarray:
        blurred = cv2.GaussianBlur(gray, (5, 5), 0)
        median = float(np.median(blurred))
        edges = cv2.Canny(blurred, max(10.0, 0.5 * median), max(30.0, 1.2 * median))
        edges = cv2.dilate(edges, cv2.getStructuringElement(cv2.MORPH_RECT, (3, 3)))
        # close the page outline, then fill it so that text inside does not split it
        contours, _ = cv2.findContours(edges, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        filled = np.zeros_like(edges)
        cv2.drawContours(filled, contours, -1, 255, cv2.FILLED)
        return filled

    # -- scoring ------------------------------------------------------------------------------

    @staticmethod
    def _side_support(smooth_log: np.ndarray, quad: np.ndarray, samples: int = 24,
                      offset: float = STEP_OFFSET) -> list[float]:
        """Per side, the fraction of points along it where the image steps from inside to
        outside as a paper's edge does: brighter inside by at least ``STEP_MIN`` (log units, so
        a shadow over both sides does not change it). A printed line (a form's frame, a mat's
        grid) is bright or dark on both sides and is no step; the outer flank of a form's
        frame steps the wrong way round. Paper is taken to be lighter than the mat around it
        (white, cream or pale paper and cards on the dark or grey mats of kiosks)."""
        h, w = smooth_log.shape
        quad = order_corners(quad)
        extension = samples // 3
        t = np.concatenate([np.linspace(0.1, 0.9, samples),
                            np.linspace(-0.3, -0.08, extension),
                            np.linspace(1.08, 1.3, extension)])[None, :, None]
        a = quad[:, None, :]
        b = np.roll(quad, -1, axis=0)[:, None, :]
        along = b - a
        normal = np.stack([-along[..., 1], along[..., 0]], axis=-1)
        normal /= np.linalg.norm(normal, axis=-1, keepdims=True) + 1e-9  # points inside
        base = a + along * t
        pts = np.stack([base + offset * normal, base - offset * normal])  # in/out, side, t, xy
        values = _sample(smooth_log, pts)
        step = values[0] - values[1]
        off_frame = ((pts[..., 0] < 0) | (pts[..., 0] > w - 1) | (pts[..., 1] < 0)
                     | (pts[..., 1] > h - 1)).any(axis=0)
        good = (step > STEP_MIN) & ~off_frame
        support = good[:, :samples].mean(axis=1)
        # a side whose step runs on past its corners is a shadow's edge (or a stripe of the
        # mat) crossing the paper, not the paper's own edge, which ends at its corners
        on_frame = (~off_frame[:, samples:]).sum(axis=1)
        runs_on = good[:, samples:].sum(axis=1) / np.maximum(on_frame, 1)
        runs_on = np.where(on_frame >= extension // 2, runs_on, 0.0)
        result = np.clip(support - EXTENSION_PENALTY * runs_on, 0, 1)
        # a page running out of the picture: the side along the frame's edge has no step to
        # show; it counts half as well as the page's other sides do (at most two such sides,
        # and not for a quad that nearly fills the frame, as a mat's printed border would),
        # enough to be found (and told to move in), never enough to beat a whole page
        edge = base[:, :samples]
        margin = offset + 1
        cut = ((edge[..., 0] < margin) | (edge[..., 0] > w - 1 - margin)
               | (edge[..., 1] < margin) | (edge[..., 1] > h - 1 - margin)).mean(axis=1) > 0.8
        if 0 < cut.sum() <= 2 and quad_area(quad) < 0.75 * w * h:
            result[cut] = 0.5 * float(result[~cut].mean())
        return [float(v) for v in result]

    def _score(self, smooth_log: np.ndarray, quad: np.ndarray) -> tuple[float, list[float]]:
        h, w = smooth_log.shape
        quad = order_corners(quad)
        area = quad_area(quad)
        if not is_convex(quad) or not (self.min_area_fraction * w * h <= area
                                       <= self.max_area_fraction * w * h):
            return 0.0, []
        for i in range(4):  # corner angles of a page under mild perspective
            v1 = quad[i - 1] - quad[i]
            v2 = quad[(i + 1) % 4] - quad[i]
            cos = float(np.dot(v1, v2) / (np.linalg.norm(v1) * np.linalg.norm(v2) + 1e-9))
            if abs(cos) > 0.45:
                return 0.0, []
        support = self._side_support(smooth_log, quad)
        cw, ch = corrected_size(quad)
        aspect = max(cw, ch) / max(1, min(cw, ch))
        aspect_bonus = 1.0 if min(abs(aspect - A4_ASPECT), abs(aspect - ID_CARD_ASPECT)) < 0.1 \
            else 0.85
        # of two equally supported quads, the larger is the page (a shadow's edge can cut a
        # page in two well-supported pieces; no piece is larger than the whole)
        size_bonus = 1 + 0.15 * math.sqrt(area / (w * h))
        score = (0.7 * float(np.mean(support)) + 0.3 * min(support)) * aspect_bonus * size_bonus
        return score, support

    @staticmethod
    def grow(smooth_log: np.ndarray, quad: np.ndarray, samples: int = 24,
             reach: float = 0.25) -> np.ndarray:
        """Move each side outward to the outermost parallel paper edge within ``reach`` of
        the quad's shorter side, if the band crossed on the way is paper (not darker than the
        page inside): a form's printed frame or a text block is not the sheet's edge.

        A side moves only to a line where the inside-to-outside step holds along as much of
        the side as it did where it was."""
        quad = order_corners(quad)
        h, w = smooth_log.shape
        a = quad
        b = np.roll(quad, -1, axis=0)
        along = b - a
        lengths = np.linalg.norm(along, axis=1)
        outward = np.stack([along[:, 1], -along[:, 0]], axis=-1) / (lengths[:, None] + 1e-9)
        limit = max(4, int(reach * float(lengths.min())))
        deltas = np.arange(0, limit + 1, dtype=np.float64)
        t = np.linspace(0.1, 0.9, samples)
        base = a[:, None, :] + along[:, None, :] * t[None, :, None]  # side, sample, xy

        def sample(offsets: np.ndarray) -> np.ndarray:
            """Log brightness at base + offset * outward; offsets per delta -> side, delta,
            sample."""
            pts = base[:, None, :, :] + offsets[None, :, None, None] * outward[:, None, None, :]
            return _sample(smooth_log, pts, cv2.BORDER_CONSTANT, -1e4)

        inside = sample(deltas - STEP_OFFSET)
        outside = sample(deltas + STEP_OFFSET)
        band = sample(deltas / 2)
        step = inside - outside
        good = ((step > STEP_MIN) & (outside > -1e3)).mean(axis=2)  # side, delta
        # the band crossed is paper: no darker than the page just inside the side
        paper = (band - inside[:, :1, :] > -PAPER_TOLERANCE).mean(axis=2) > 0.8
        lines = []
        for i in range(4):
            ok = (good[i] >= max(0.6, 0.8 * good[i, 0])) & paper[i]
            ok[0] = True
            # the outward run of paper must be unbroken up to the chosen line
            broken = np.flatnonzero(~paper[i])
            last = int(broken[0]) if broken.size else len(deltas)
            choices = np.flatnonzero(ok[:last + 1] if last < len(deltas) else ok)
            delta = float(deltas[choices[-1]]) if choices.size else 0.0
            lines.append((a[i] + delta * outward[i], along[i]))
        corners = []
        for i in range(4):
            (p1, d1), (p2, d2) = lines[i - 1], lines[i]
            m = np.array([d1, -d2]).T
            if abs(np.linalg.det(m)) < 1e-9:
                return quad
            s = np.linalg.solve(m, p2 - p1)
            corners.append(p1 + s[0] * d1)
        grown = np.array(corners)
        if not (np.all(grown >= -2) and np.all(grown[:, 0] <= w + 1)
                and np.all(grown[:, 1] <= h + 1)):
            return quad
        return order_corners(grown)

    # -- refinement ---------------------------------------------------------------------------

    @staticmethod
    def refine(gray: np.ndarray, quad: np.ndarray, radius: float,
               samples: int = 48) -> np.ndarray:
        """Fit each side of ``quad`` to the strongest edge within ``radius`` px; intersect."""
        quad = order_corners(quad)
        sigma = max(0.8, radius / 8)
        steps = np.arange(-math.ceil(radius), math.ceil(radius) + 1, dtype=np.float32)
        lines = []
        for i in range(4):
            a, b = quad[i], quad[(i + 1) % 4]
            direction = (b - a) / (np.linalg.norm(b - a) + 1e-9)
            normal = np.array([-direction[1], direction[0]])
            t = np.linspace(0.08, 0.92, samples)[:, None]
            base = a + (b - a) * t
            coords = base[:, None, :] + steps[None, :, None] * normal[None, None, :]
            map_x = coords[..., 0].astype(np.float32)
            map_y = coords[..., 1].astype(np.float32)
            # sample the raw image, then smooth only the profiles (cheap at 12 MP)
            profile: np.ndarray = cv2.remap(gray, map_x, map_y, cv2.INTER_LINEAR,
                                            borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
            profile = cv2.GaussianBlur(profile, (0, 0), sigmaX=sigma, sigmaY=0.6)
            deriv = np.abs(np.diff(profile, axis=1))
            idx = np.argmax(deriv, axis=1)
            strength = deriv[np.arange(samples), idx]
            # sub-pixel peak by a parabola through the neighbours
            left = deriv[np.arange(samples), np.clip(idx - 1, 0, deriv.shape[1] - 1)]
            right = deriv[np.arange(samples), np.clip(idx + 1, 0, deriv.shape[1] - 1)]
            denom = left - 2 * strength + right
            offset = np.divide(0.5 * (left - right), denom, out=np.zeros_like(denom),
                               where=np.abs(denom) > 1e-6)
            offset = np.clip(offset, -0.5, 0.5)
            pos = steps[idx] + 0.5 + offset
            points = base + pos[:, None] * normal[None, :]
            keep = strength > max(4.0, 0.35 * float(np.median(strength)))
            if keep.sum() < samples // 4:
                lines.append((a, direction))  # no edge: keep the side as it was
                continue
            pts = points[keep]
            for _ in range(2):  # fit, drop points far from the line, fit again
                vx, vy, x0, y0 = cv2.fitLine(pts.astype(np.float32), cv2.DIST_HUBER, 0, 0.01,
                                             0.01).ravel()
                d = np.abs((pts[:, 0] - x0) * vy - (pts[:, 1] - y0) * vx)
                good = d < max(1.0, radius / 4)
                if good.sum() < 6 or good.all():
                    break
                pts = pts[good]
            lines.append((np.array([x0, y0]), np.array([vx, vy])))
        corners = []
        for i in range(4):
            (p1, d1), (p2, d2) = lines[i - 1], lines[i]
            m = np.array([d1, -d2]).T
            if abs(np.linalg.det(m)) < 1e-9:
                corners.append(quad[i])
                continue
            s = np.linalg.solve(m, p2 - p1)
            corners.append(p1 + s[0] * d1)
        refined = np.array(corners)
        # a refinement that moved a corner far is a failed one: keep the coarse quad
        if np.linalg.norm(refined - quad, axis=1).max() > 4 * radius:
            return quad
        return order_corners(refined)

    # -- the whole detection ------------------------------------------------------------------

    def detect(self, frame: np.ndarray, *, refine: bool = True) -> Detection:
        """Find the page in one frame; corners come back in the frame's own pixels."""
        started = time.perf_counter()
        h, w = frame.shape[:2]
        work, scale = self._downscale(frame)
        gray = _to_gray(work)
        log_gray = cv2.LUT(gray, _SHADE_TABLE)
        smooth = cv2.GaussianBlur(log_gray, (0, 0), 1.0)
        min_area = self.min_area_fraction * gray.size
        candidates: list[tuple[str, np.ndarray]] = []
        for ref_mask in (self._reference_masks(work) or []) if work.ndim == 3 else []:
            candidates += [("reference", q) for q in _contours_to_quads(ref_mask, min_area)]
        if self._reference_log is not None and self._reference_log.shape == log_gray.shape:
            ratio = cv2.subtract(log_gray, self._reference_log)
            candidates += [("reference-edges", q)
                           for q in _outline_quads(_log_edges(ratio), min_area)]
        candidates += [("shade-edges", q) for q in _outline_quads(_log_edges(log_gray), min_area)]
        if work.ndim == 3:
            bright = cv2.bitwise_and(self._brightness_mask(work), cv2.bitwise_not(
                cv2.bitwise_or(_skin_mask(work), _glare_mask(work))))
            candidates += [("brightness", q) for q in _contours_to_quads(bright, min_area)]
        candidates += [("edges", q) for q in _contours_to_quads(self._edge_mask(gray), min_area)]
        # score every candidate as found, keep the few best distinct ones, refine only those
        coarse_scored = sorted(((self._score(smooth, q)[0], source, q)
                                for source, q in candidates), key=lambda c: -c[0])
        shortlist: list[tuple[str, np.ndarray]] = []
        for coarse_score, source, q in coarse_scored:
            if len(shortlist) == REFINED_CANDIDATES or (coarse_score <= 0 and shortlist):
                break
            if all(iou(q, kept) < 0.97 for _, kept in shortlist):
                shortlist.append((source, q))
        refined: list[tuple[float, str, np.ndarray, list[float]]] = []
        for source, coarse in shortlist:
            versions = [coarse]
            if refine:  # coarse to fine: a blob stuck to one side is shed by the line fit
                quad = self.refine(log_gray, self.refine(log_gray, coarse, radius=10), radius=3)
                versions.append(quad)
                grown = self.grow(smooth, quad)
                if np.abs(grown - order_corners(quad)).max() > 1:
                    versions.append(self.refine(log_gray, grown, radius=2))
            # a refinement that lost support (drawn to a shadow's edge) is not taken
            scored = [(*self._score(smooth, q), q) for q in versions]
            score, support, quad = max(scored, key=lambda v: v[0])
            refined.append((score, source, quad, support))
        refined.sort(key=lambda r: -r[0])
        best = refined[0] if refined else None
        if best is not None:  # the outermost well-supported quad around the best one
            for candidate in refined[1:]:
                if (candidate[0] >= OUTER_SCORE_RATIO * best[0]
                        and quad_area(candidate[2]) > quad_area(best[2])
                        and _contains(candidate[2], best[2])):
                    best = candidate
        ms = (time.perf_counter() - started) * 1000
        if best is None or best[0] < 0.5:
            return Detection(False, ms=ms, score=best[0] if best else 0.0)
        score, source, quad, support = best
        corners = quad / scale
        if refine and scale < 1:
            corners = self.refine(_to_gray(frame), corners, radius=max(2.0, 1.5 / scale))
        cw, ch = corrected_size(corners)
        kind = classify(cw, ch, frame_long_side=max(w, h))
        return Detection(True, order_corners(corners), score, kind, source,
                         (time.perf_counter() - started) * 1000, support)


def baseline_detect(frame: np.ndarray) -> np.ndarray | None:
    """The classic approach, for comparison: Canny, contours, the largest 4-point polygon."""
    gray = cv2.GaussianBlur(_to_gray(frame), (5, 5), 0)
    edges = cv2.Canny(gray, 75, 200)
    contours, _ = cv2.findContours(edges, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    for c in sorted(contours, key=cv2.contourArea, reverse=True)[:5]:
        approx = cv2.approxPolyDP(c, 0.02 * cv2.arcLength(c, True), True)
        if len(approx) == 4:
            return order_corners(approx.reshape(4, 2))
    return None
