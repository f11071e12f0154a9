"""Quadrilaterals: corner order, area, IoU (the SmartDoc 2015 Jaccard index), page kinds."""

from __future__ import annotations

from enum import StrEnum

import cv2
import numpy as np

A4_ASPECT = 297 / 210
"""Long side over short side of ISO A4 (and every ISO A size)."""
ID_CARD_ASPECT = 85.6 / 54
"""ISO/IEC 7810 ID-1: the resident ID card."""


class PageKind(StrEnum):
    """What a detected page is, by its corrected aspect ratio and size."""

    A4_PORTRAIT = "a4_portrait"
    A4_LANDSCAPE = "a4_landscape"
    ID_CARD = "id_card"
    OTHER = "other"


def order_corners(points: np.ndarray) -> np.ndarray:
    """Four points clockwise (in image coordinates, y down) starting at the top-left one.

    The top-left corner is the one with the smallest x + y; clockwise on screen means
    increasing angle with y pointing down.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(4, 2)
    centre = pts.mean(axis=0)
    angles = np.arctan2(pts[:, 1] - centre[1], pts[:, 0] - centre[0])
    pts = pts[np.argsort(angles)]  # clockwise on screen (y down)
    start = int(np.argmin(pts.sum(axis=1)))
    return np.roll(pts, -start, axis=0)


def quad_area(quad: np.ndarray) -> float:
    return float(cv2.contourArea(np.asarray(quad, np.float32).reshape(-1, 1, 2)))


def is_convex(quad: np.ndarray) -> bool:
    return bool(cv2.isContourConvex(np.asarray(quad, np.float32).reshape(-1, 1, 2)))


def iou(a: np.ndarray | None, b: np.ndarray | None) -> float:
    """Jaccard index of two convex quads; a missing one scores 0."""
    if a is None or b is None:
        return 0.0
    pa: np.ndarray = np.asarray(order_corners(a), np.float32)
    pb: np.ndarray = np.asarray(order_corners(b), np.float32)
    if not (is_convex(pa) and is_convex(pb)):
        pa = cv2.convexHull(pa).reshape(-1, 2)
        pb = cv2.convexHull(pb).reshape(-1, 2)
    inter, _ = cv2.intersectConvexConvex(pa, pb)
    union = quad_area(pa) + quad_area(pb) - inter
    return float(inter / union) if union > 0 else 0.0


def side_lengths(quad: np.ndarray) -> np.ndarray:
    """Lengths of the sides top, right, bottom, left of an ordered quad."""
    q = order_corners(quad)
    return np.asarray(np.linalg.norm(q - np.roll(q, -1, axis=0), axis=1))


def corrected_size(quad: np.ndarray) -> tuple[int, int]:
    """Width and height of the page when flattened (means of opposite sides)."""
    s = side_lengths(quad)
    return round(float(s[0] + s[2]) / 2), round(float(s[1] + s[3]) / 2)


def classify(width: float, height: float, *, frame_long_side: float,
             card_max_fraction: float = 0.45) -> PageKind:
    """A4 portrait/landscape, ID card, or other, by aspect (and size, for the card)."""
    if width <= 0 or height <= 0:
        return PageKind.OTHER
    long_side, short_side = max(width, height), min(width, height)
    aspect = long_side / short_side
    if abs(aspect - ID_CARD_ASPECT) < 0.07 and long_side < card_max_fraction * frame_long_side:
        return PageKind.ID_CARD
    if abs(aspect - A4_ASPECT) < 0.08:
        return PageKind.A4_PORTRAIT if height > width else PageKind.A4_LANDSCAPE
    return PageKind.OTHER


def touches_border(quad: np.ndarray, width: int, height: int, margin: float = 2.0) -> bool:
    """Whether any corner lies on or outside the frame's edge."""
    q = np.asarray(quad)
    return bool((q[:, 0] < margin).any() or (q[:, 1] < margin).any()
                or (q[:, 0] > width - 1 - margin).any() or (q[:, 1] > height - 1 - margin).any())
