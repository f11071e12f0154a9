"""The face camera: the generic camera, with a SIMULATED face as its ``sim`` source.

The simulated face is a photograph that acts out liveness prompts: a head turn is a local
warp that moves the nose across the face (what the 5-point landmarks measure), a blink paints
the eyelids shut. It is not a person and never passes for one: everything it feeds is labelled
simulated. By default it is scikit-image's public-domain astronaut portrait (Eileen Collins),
which ships inside the scikit-image package; tests use ../shared/testdata/faces.
"""

from __future__ import annotations

import cv2
import numpy as np

from devices.camera import Camera, CameraConfig, SimulatedSource


def face_geometry(bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Left eye, right eye and nose tip (x, y) of the face in a photo, via face_recognition."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import face_recognition

    rgb = np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    boxes = face_recognition.face_locations(rgb, 1)
    if not boxes:
        return None
    marks = face_recognition.face_landmarks(rgb, boxes[:1], model="small")[0]
    return (np.mean(marks["left_eye"], axis=0), np.mean(marks["right_eye"], axis=0),
            np.asarray(marks["nose_tip"][0], float))


def card_photo_from_portrait(bgr: np.ndarray) -> np.ndarray:
    """A stand-in for a decoded card photo: the face at ~60 px wide in 102 x 126 pixels,
    JPEG quality 30, the way a decoded WLT chip photo looks (SIMULATED)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import face_recognition

    rgb = np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    boxes = face_recognition.face_locations(rgb, 1)
    if not boxes:
        raise ValueError("no face in the portrait")
    top, right, bottom, left = boxes[0]
    cx, cy = (left + right) // 2, (top + bottom) // 2
    width = int((right - left) / 0.6)
    height = int(width * 126 / 102)
    y0, x0 = max(0, cy - int(height * 0.45)), max(0, cx - width // 2)
    crop = bgr[y0:y0 + height, x0:x0 + width]
    small = cv2.resize(crop, (102, 126), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 30])
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else None
    if decoded is None:
        raise ValueError("could not degrade the portrait")
    return decoded


class SimulatedFace:
    """A still portrait that can turn its head and close its eyes (SIMULATED)."""

    def __init__(self, portrait_bgr: np.ndarray, seed: int = 0) -> None:
        geometry = face_geometry(portrait_bgr)
        if geometry is None:
            raise ValueError("no face in the portrait for the simulated face camera")
        self.portrait = portrait_bgr
        self.left_eye, self.right_eye, self.nose = geometry
        self.eye_distance = float(np.linalg.norm(self.left_eye - self.right_eye))
        h, w = portrait_bgr.shape[:2]
        self._yy, self._xx = np.mgrid[0:h, 0:w].astype(np.float32)
        # the nose moves across the face while the eyes barely do: what a turn looks like to
        # the 5-point landmarks (the nose tip is nearer the camera than the eye corners)
        centre = (self.left_eye + self.right_eye) / 2 * 0.25 + self.nose * 0.75
        d = self.eye_distance
        self._bump = np.exp(-(((self._xx - centre[0]) / (0.45 * d)) ** 2
                              + ((self._yy - centre[1]) / (0.6 * d)) ** 2)).astype(np.float32)
        self._rng = np.random.default_rng(seed)

    def render(self, turn: float = 0.0, eyes_closed: bool = False,
               jitter: float = 1.0) -> np.ndarray:
        """``turn`` > 0 turns the head to the person's left (nose towards the image's right)
        by about ``turn`` eye distances; ``jitter`` pixels of sway like a real sitter."""
        shift = self._rng.normal(0, jitter, 2) if jitter else np.zeros(2)
        if turn == 0 and not eyes_closed:  # frontal: the sway alone, a cheap translation
            h, w = self.portrait.shape[:2]
            sway = np.array([[1, 0, shift[0]], [0, 1, shift[1]]], np.float32)
            moved: np.ndarray = cv2.warpAffine(self.portrait, sway, (w, h),
                                               flags=cv2.INTER_LINEAR,
                                               borderMode=cv2.BORDER_REFLECT)
            return moved
        map_x = (self._xx - turn * 0.8 * self.eye_distance * self._bump
                 - np.float32(shift[0])).astype(np.float32)
        map_y = (self._yy - np.float32(shift[1])).astype(np.float32)
        image = cv2.remap(self.portrait, map_x, map_y, cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT)
        if eyes_closed:  # skin over the eye, a dark line where the lids meet
            d = self.eye_distance
            for eye in (self.left_eye, self.right_eye):
                x, y = int(eye[0] + shift[0]), int(eye[1] + shift[1])
                cheek = image[min(image.shape[0] - 1, y + int(0.35 * d)),
                              max(0, x - int(0.1 * d)):x + int(0.1 * d) + 1]
                skin = [int(v) for v in np.median(cheek.reshape(-1, 3), axis=0)]
                axes = (int(0.3 * d), max(2, int(0.14 * d)))
                lid = image.copy()
                cv2.ellipse(lid, (x, y), axes, 0, 0, 360, skin, -1, cv2.LINE_AA)
                cv2.ellipse(lid, (x, y + axes[1] // 3), (axes[0] - 2, max(1, axes[1] // 3)), 0,
                            10, 170, (40, 30, 30), max(1, int(d / 40)), cv2.LINE_AA)
                image = cv2.addWeighted(lid, 0.92, image, 0.08, 0)
        return image


class PromptFollower:
    """Acts out whatever step is asked of it: ramps into a turn over ``ramp`` seconds and holds
    it; blinks once; rests frontal when no step is asked."""

    def __init__(self, face: SimulatedFace, ramp: float = 0.6) -> None:
        self.face = face
        self.ramp = ramp
        self._step: str | None = None
        self._since = 0.0

    def frame(self, step: str | None, t: float) -> np.ndarray:
        if step != self._step:
            self._step, self._since = step, t
        progress = min(1.0, (t - self._since) / self.ramp) if self.ramp else 1.0
        if step == "turn_left":
            return self.face.render(turn=0.9 * progress)
        if step == "turn_right":
            return self.face.render(turn=-0.9 * progress)
        if step == "blink":
            return self.face.render(eyes_closed=0.2 < (t - self._since) % 1.0 < 0.45)
        return self.face.render()


def astronaut() -> np.ndarray:
    """scikit-image's public-domain astronaut portrait (BGR, shipped inside that package),
    cropped to head and shoulders as a kiosk's face camera sees a citizen."""
    from skimage import data

    portrait: np.ndarray = data.astronaut()  # type: ignore[no-untyped-call]
    return cv2.cvtColor(portrait[0:300, 140:440], cv2.COLOR_RGB2BGR)


class SimulatedFaceSource(SimulatedSource):
    """A SIMULATED face camera: the portrait, swaying slightly, acting out ``step``."""

    def __init__(self, seed: int, config: CameraConfig,
                 portrait: np.ndarray | None = None) -> None:
        super().__init__(config)
        image = astronaut() if portrait is None else portrait
        w, h = config.preview_size
        scale = min(w / image.shape[1], h / image.shape[0])
        image = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)))
        canvas = np.full((h, w, 3), 40, np.uint8)
        y, x = (h - image.shape[0]) // 2, (w - image.shape[1]) // 2
        canvas[y:y + image.shape[0], x:x + image.shape[1]] = image
        self.follower = PromptFollower(SimulatedFace(canvas, seed))
        self.step: str | None = None
        """The liveness step the simulated person is acting out (set by the kiosk demo)."""

    def read(self) -> np.ndarray | None:
        return self.follower.frame(self.step, self.now())


class FaceCamera(Camera):
    """The kiosk's face camera; ``source = "sim"`` is the SIMULATED face."""

    simulated_factory = staticmethod(SimulatedFaceSource)
