"""From a detected quad to a finished page: perspective correction at full resolution to the
page's true aspect, turning it upright, and the output modes (colour, document, grey, b/w)."""

from __future__ import annotations

from enum import StrEnum

import cv2
import numpy as np

from devices.scanner.geometry import A4_ASPECT, ID_CARD_ASPECT, PageKind, corrected_size


class OutputMode(StrEnum):
    COLOUR = "colour"
    """The corrected page as the camera saw it."""
    DOCUMENT = "document"
    """Background and shadows flattened to white paper, crisp text, stamps keep their red."""
    GREY = "grey"
    BLACK_WHITE = "bw"
    """Adaptive threshold: smallest files, for text-only pages."""


def target_size(corners: np.ndarray, kind: PageKind, max_long_side: int | None = None,
                ) -> tuple[int, int]:
    """Output width and height: the measured size, snapped to the kind's true aspect."""
    w, h = corrected_size(corners)
    long_side = max(w, h)
    if max_long_side:
        long_side = min(long_side, max_long_side)
    aspect = {PageKind.A4_PORTRAIT: A4_ASPECT, PageKind.A4_LANDSCAPE: A4_ASPECT,
              PageKind.ID_CARD: ID_CARD_ASPECT}.get(kind)
    if aspect is None:
        scale = long_side / max(w, h, 1)
        return max(1, round(w * scale)), max(1, round(h * scale))
    short_side = round(long_side / aspect)
    return (long_side, short_side) if w >= h else (short_side, long_side)


def warp(frame: np.ndarray, corners: np.ndarray, kind: PageKind = PageKind.OTHER,
         max_long_side: int | None = None) -> np.ndarray:
    """The page flattened (corners ordered clockwise from the top-left one)."""
    dw, dh = target_size(corners, kind, max_long_side)
    dst = np.array([[0, 0], [dw - 1, 0], [dw - 1, dh - 1], [0, dh - 1]], np.float32)
    m = cv2.getPerspectiveTransform(np.asarray(corners, np.float32), dst)
    return cv2.warpPerspective(frame, m, (dw, dh), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)


def _ink(gray: np.ndarray) -> np.ndarray:
    return cv2.adaptiveThreshold(gray, 1, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY_INV,
                                 25, 15)


def _small_gray(image: np.ndarray, long_side: int = 600) -> np.ndarray:
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    scale = long_side / max(gray.shape)
    if scale < 1:
        gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return gray


def text_line_strength(gray: np.ndarray) -> float:
    """How strongly ink forms horizontal lines: variance of the row profile."""
    ink = _ink(gray).astype(np.float32)
    return float(ink.mean(axis=1).var())


def text_skew_degrees(image: np.ndarray, search: float = 5.0, step: float = 0.1) -> float:
    """The angle (degrees, counter-clockwise positive) by which text lines deviate from
    horizontal, found as the rotation that makes the row profile sharpest."""
    gray = _small_gray(image)
    ink = _ink(gray).astype(np.float32)
    h, w = ink.shape
    m = 0.08
    ink = ink[int(h * m): int(h * (1 - m)), int(w * m): int(w * (1 - m))]
    h, w = ink.shape
    best, best_angle = -1.0, 0.0
    for angle in np.arange(-search, search + step / 2, step):
        rot = cv2.getRotationMatrix2D((w / 2, h / 2), float(angle), 1.0)
        turned = cv2.warpAffine(ink, rot, (w, h), flags=cv2.INTER_NEAREST)
        value = float(turned.sum(axis=1).var())
        if value > best:
            best, best_angle = value, float(angle)
    return -best_angle


def _red_centroid(image: np.ndarray) -> tuple[float, float] | None:
    small = image if max(image.shape[:2]) <= 600 else cv2.resize(
        image, None, fx=600 / max(image.shape[:2]), fy=600 / max(image.shape[:2]),
        interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)
    red = (((hsv[..., 0] < 10) | (hsv[..., 0] > 170)) & (hsv[..., 1] > 90)
           & (hsv[..., 2] > 80))
    if red.mean() < 0.002:
        return None
    ys, xs = np.nonzero(red)
    return float(xs.mean() / small.shape[1]), float(ys.mean() / small.shape[0])


def upright(image: np.ndarray, kind: PageKind) -> tuple[np.ndarray, int]:
    """Turn a corrected page so that its text reads left to right, top down.

    Returns the image and the clockwise rotation applied (0, 90, 180, 270). Cards are made
    landscape; pages are turned so that text lines run horizontally. The 180-degree question
    is settled by the red seal (documents: lower half; a card's emblem: upper left) and, without
    one, by the margins (text starts near the top and ends well above the bottom).
    """
    rotation = 0
    if kind is PageKind.ID_CARD:
        if image.shape[0] > image.shape[1]:
            image, rotation = cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE), 90
    else:
        gray = _small_gray(image)
        if text_line_strength(cv2.rotate(gray, cv2.ROTATE_90_CLOCKWISE)) > \
                1.3 * text_line_strength(gray):
            image, rotation = cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE), 90
    red = _red_centroid(image)
    flip = False
    if red is not None:
        flip = red[1] < 0.5 if kind is not PageKind.ID_CARD else (red[0] + red[1]) > 1.0
    elif kind is not PageKind.ID_CARD:
        rows = _ink(_small_gray(image)).mean(axis=1)
        inked = np.nonzero(rows > 0.02)[0]
        if len(inked):
            top, bottom = inked[0], len(rows) - 1 - inked[-1]
            flip = bool(top > 1.5 * bottom + 5)
    if flip:
        image = cv2.rotate(image, cv2.ROTATE_180)
        rotation = (rotation + 180) % 360
    return image, rotation


def flatten_background(image: np.ndarray) -> np.ndarray:
    """Divide out the paper's shading: white paper, dark text, colours kept."""
    h, w = image.shape[:2]
    scale = 256 / max(h, w)
    small = cv2.resize(image, (max(8, int(w * scale)), max(8, int(h * scale))),
                       interpolation=cv2.INTER_AREA)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))
    background = cv2.dilate(small, kernel)  # text is thin and dark: dilation removes it
    background = cv2.medianBlur(background, 7)
    background = cv2.resize(background, (w, h), interpolation=cv2.INTER_LINEAR)
    flat = cv2.divide(image, background, scale=255)
    # stretch: paper to white, text towards black
    lut = np.clip((np.arange(256, dtype=np.float32) - 40) * 255 / (235 - 40), 0, 255)
    return cv2.LUT(flat, lut.astype(np.uint8))


def render_mode(page: np.ndarray, mode: OutputMode) -> np.ndarray:
    """The page in an output mode (grey and b/w come back single-channel)."""
    if mode is OutputMode.COLOUR:
        return page
    if mode is OutputMode.DOCUMENT:
        return flatten_background(page)
    gray = cv2.cvtColor(flatten_background(page), cv2.COLOR_BGR2GRAY)
    if mode is OutputMode.GREY:
        return gray
    block = max(15, (min(gray.shape) // 40) | 1)
    return cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_GAUSSIAN_C, cv2.THRESH_BINARY,
                                 block, 12)
