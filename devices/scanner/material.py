"""A captured material: its pages as JPEG, and one multi-page PDF that embeds those JPEGs
as they are (img2pdf: no re-encoding, so the clerk sees exactly what was captured).

An ID card's front and back, captured one after the other, become one page: both sides laid
on a white A4 sheet the way a photocopy of an ID card looks (身份证复印件).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import img2pdf
import numpy as np

from devices.scanner.geometry import PageKind

A4_PT = (img2pdf.mm_to_pt(210), img2pdf.mm_to_pt(297))


def encode_jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    """JPEG bytes of an image (colour or single-channel)."""
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality),
                                           cv2.IMWRITE_JPEG_OPTIMIZE, 0])
    if not ok:
        raise ValueError("could not encode JPEG")
    return bytes(buf)


def compose_card_pair(front: np.ndarray, back: np.ndarray, dpi: int = 300) -> np.ndarray:
    """Front above back, at true size on a white A4 sheet (a photocopy's layout)."""
    mm = dpi / 25.4
    sheet = np.full((int(297 * mm), int(210 * mm), 3), 255, np.uint8)
    card_w, card_h = int(85.6 * mm), int(54 * mm)
    x = (sheet.shape[1] - card_w) // 2
    for i, side in enumerate((front, back)):
        image = side if side.ndim == 3 else cv2.cvtColor(side, cv2.COLOR_GRAY2BGR)
        image = cv2.resize(image, (card_w, card_h), interpolation=cv2.INTER_AREA)
        y = int((60 + i * 90) * mm)
        sheet[y:y + card_h, x:x + card_w] = image
    return sheet


@dataclass
class Page:
    """One finished page of a material."""

    jpeg: bytes
    kind: PageKind
    width: int
    height: int


@dataclass
class Material:
    """The pages captured for one item of the matter's checklist."""

    name: str
    pages: list[Page] = field(default_factory=list)
    pending_card_front: np.ndarray | None = field(default=None, repr=False)
    jpeg_quality: int = 90

    def add(self, image: np.ndarray, kind: PageKind) -> Page | None:
        """Add a captured page; an ID card's first side waits for its second."""
        if kind is PageKind.ID_CARD:
            if self.pending_card_front is None:
                self.pending_card_front = image
                return None
            image = compose_card_pair(self.pending_card_front, image)
            self.pending_card_front = None
            kind = PageKind.A4_PORTRAIT
        page = Page(encode_jpeg(image, self.jpeg_quality), kind, image.shape[1], image.shape[0])
        self.pages.append(page)
        return page

    @property
    def waiting_for_card_back(self) -> bool:
        return self.pending_card_front is not None

    def to_pdf(self) -> bytes:
        """All pages in one PDF; A4 pages at A4 size, the JPEG streams embedded unchanged."""
        if not self.pages:
            raise ValueError("a material with no pages has no PDF")
        layout = img2pdf.get_layout_fun(A4_PT)
        pdf = img2pdf.convert([p.jpeg for p in self.pages], layout_fun=layout)
        if pdf is None:
            raise ValueError("img2pdf produced no PDF")
        return bytes(pdf)
