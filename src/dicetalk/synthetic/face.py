"""A parametric 2-D face: identity appearance and an anti-aliased renderer.

Geometry lives in *face units*: the head's half-height is 1, x points right, y points down,
the head's centre is the origin. Facial features sit on the front of a head ellipsoid, so a
head pose (yaw, pitch, roll) moves and foreshortens them as a 3-D rotation would; the
silhouette, ears and hair only roll and shift (a rotating ellipsoid keeps its outline).

Rendering fills polygons with OpenCV at ``SUPERSAMPLE`` times the output size, with
sub-pixel fixed-point vertices, then box-filters down: every edge is anti-aliased and a
small change of a coefficient moves edges smoothly rather than by whole pixels.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from .expressions import EXPRESSION_INDEX, EXPRESSION_NAMES, NUM_EXPRESSION, clip_expression

SUPERSAMPLE = 4
_SHIFT = 4  # fixed-point bits of polygon vertices: 1/16 of a canvas pixel
_ONE = 1 << _SHIFT
_HEAD_DEPTH = 0.85  # half-depth of the head ellipsoid, face units

HAIR_STYLES = ("short", "long", "bun", "fringe", "buzz", "side_part", "curly")
BACKGROUND_PATTERNS = ("plain", "gradient", "stripes", "dots", "checker")

_SKIN_TONES = np.array(
    [(255, 224, 196), (241, 194, 158), (224, 172, 130), (198, 140, 100), (165, 108, 72), (124, 80, 54), (92, 60, 42)],
    np.float64,
)
_HAIR_COLOURS = np.array(
    [(28, 24, 24), (62, 42, 30), (105, 70, 42), (150, 80, 40), (205, 170, 105), (165, 162, 160), (120, 40, 30)],
    np.float64,
)
_IRIS_COLOURS = np.array([(70, 45, 25), (110, 75, 40), (60, 100, 150), (75, 120, 80), (120, 130, 135), (35, 25, 20)], np.float64)

_SCLERA = (240.0, 238.0, 232.0)
_PUPIL = (14.0, 12.0, 16.0)
_MOUTH_INSIDE = (70.0, 22.0, 28.0)
_TEETH = (238.0, 236.0, 226.0)


@dataclass(frozen=True)
class Appearance:
    """Everything that makes one synthetic face look like itself (colours are RGB 0..255)."""

    head_scale: float  # head half-height as a fraction of the frame size
    head_y: float  # head centre, fraction of the frame height
    head_width: float  # head half-width, face units
    jaw: float  # jaw width at the chin relative to the cheeks (smaller: pointier chin)
    skin: tuple[float, float, float]
    hair_colour: tuple[float, float, float]
    hair_style: str
    hair_volume: float  # how far hair stands off the skull, face units
    hairline: float  # height of the hairline above the eyes, face units
    eye_y: float
    eye_spacing: float  # eye centre distance from the midline
    eye_width: float  # eye half-width
    eye_height: float  # eye half-height when wide open
    eye_tilt: float  # outer corners higher (> 0) or lower
    iris_colour: tuple[float, float, float]
    iris_size: float  # iris radius relative to the eye half-height
    brow_thickness: float
    brow_colour: tuple[float, float, float]
    brow_length: float
    brow_arch: float
    brow_gap: float  # distance from the top of the open eye to the brow
    nose_y: float  # nose tip height
    nose_width: float
    mouth_y: float
    mouth_width: float  # mouth half-width
    lip_colour: tuple[float, float, float]
    upper_lip: float  # upper lip thickness
    lower_lip: float  # lower lip thickness
    ear_size: float
    shirt_colour: tuple[float, float, float]
    background: tuple[float, float, float]
    background_accent: tuple[float, float, float]
    background_pattern: str
    pattern_scale: float  # period of the background pattern, fraction of the frame

    def to_json(self) -> dict:
        """The parameters, rounded for reading (the renderer uses the exact values)."""

        def tidy(value):
            if isinstance(value, tuple):
                return [round(float(c), 2) for c in value]
            return round(value, 4) if isinstance(value, float) else value

        return {name: tidy(value) for name, value in asdict(self).items()}


def _colour(rgb) -> tuple[float, float, float]:
    return tuple(float(c) for c in np.clip(rgb, 0, 255))


def sample_appearance(rng: np.random.Generator) -> Appearance:
    """Draw a random face: shape, colours, hair, eyes, brows, nose, mouth and background."""
    skin_pos = rng.uniform(0, len(_SKIN_TONES) - 1)
    low = int(skin_pos)
    skin = _SKIN_TONES[low] + (skin_pos - low) * (_SKIN_TONES[min(low + 1, len(_SKIN_TONES) - 1)] - _SKIN_TONES[low])
    skin = skin * rng.uniform(0.96, 1.04, 3)
    hair = _HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))] * rng.uniform(0.85, 1.15)
    brow = np.minimum(hair * rng.uniform(0.45, 0.75), skin * 0.5)  # brows always read against the skin
    lip = skin * np.array([0.86, 0.55, 0.55]) + np.array([30.0, 0.0, 8.0]) * rng.uniform(0.5, 1.5)
    base_hue = rng.uniform(0, 1)
    background = _pastel(base_hue, rng.uniform(0.15, 0.45), rng.uniform(0.55, 0.9))
    accent = _pastel((base_hue + rng.uniform(0.1, 0.5)) % 1.0, rng.uniform(0.15, 0.5), rng.uniform(0.4, 0.85))
    shirt = _pastel(rng.uniform(0, 1), rng.uniform(0.2, 0.7), rng.uniform(0.25, 0.8))
    eye_height = rng.uniform(0.115, 0.14)
    return Appearance(
        head_scale=float(rng.uniform(0.35, 0.39)),
        head_y=float(rng.uniform(0.47, 0.5)),
        head_width=float(rng.uniform(0.76, 0.88)),
        jaw=float(rng.uniform(0.5, 0.85)),
        skin=_colour(skin),
        hair_colour=_colour(hair),
        hair_style=HAIR_STYLES[int(rng.integers(len(HAIR_STYLES)))],
        hair_volume=float(rng.uniform(0.06, 0.16)),
        hairline=float(rng.uniform(0.5, 0.65)),
        eye_y=float(rng.uniform(-0.08, 0.02)),
        eye_spacing=float(rng.uniform(0.31, 0.38)),
        eye_width=float(rng.uniform(0.17, 0.21)),
        eye_height=float(eye_height),
        eye_tilt=float(rng.uniform(-0.02, 0.03)),
        iris_colour=_colour(_IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))] * rng.uniform(0.85, 1.15)),
        iris_size=float(rng.uniform(0.75, 0.9)),
        brow_thickness=float(rng.uniform(0.06, 0.09)),
        brow_colour=_colour(brow),
        brow_length=float(rng.uniform(0.3, 0.38)),
        brow_arch=float(rng.uniform(0.01, 0.05)),
        brow_gap=float(rng.uniform(0.1, 0.14)),
        nose_y=float(rng.uniform(0.28, 0.34)),
        nose_width=float(rng.uniform(0.09, 0.14)),
        mouth_y=float(rng.uniform(0.55, 0.6)),
        mouth_width=float(rng.uniform(0.24, 0.32)),
        lip_colour=_colour(lip),
        upper_lip=float(rng.uniform(0.045, 0.07)),
        lower_lip=float(rng.uniform(0.06, 0.09)),
        ear_size=float(rng.uniform(0.85, 1.15)),
        shirt_colour=_colour(shirt),
        background=_colour(background),
        background_accent=_colour(accent),
        background_pattern=BACKGROUND_PATTERNS[int(rng.integers(len(BACKGROUND_PATTERNS)))],
        pattern_scale=float(rng.uniform(0.08, 0.25)),
    )


def _pastel(hue: float, saturation: float, value: float) -> np.ndarray:
    hsv = np.array([[[hue * 179.0, saturation * 255.0, value * 255.0]]], np.float32)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0].astype(np.float64)


def _mix(a, b, t: float) -> tuple[float, float, float]:
    t = min(max(float(t), 0.0), 1.0)
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t)


_CIRCLES = {n: np.stack([np.cos(t), np.sin(t)], axis=1) for n in (12, 16, 24, 32, 40) for t in [np.linspace(0, 2 * np.pi, n, endpoint=False)]}
# Parameters along curves, shared by every frame (u across a feature, s along a stroke).
_U_EYE = np.linspace(-1, 1, 25)
_U_MOUTH = np.linspace(-1, 1, 41)
_U_LINE = np.linspace(-1, 1, 16)
_S_BROW = np.linspace(0, 1, 16)
_S_FOLD = np.linspace(0, 1, 12)


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 40) -> np.ndarray:
    return _CIRCLES[n] * (rx, ry) + (cx, cy)


def _stroke(points: np.ndarray, widths) -> np.ndarray:
    """Polygon of a thick curve: the centre line offset by half the width along its normals."""
    d = np.empty_like(points)
    d[1:-1] = points[2:] - points[:-2]
    d[0] = points[1] - points[0]
    d[-1] = points[-1] - points[-2]
    normal = d[:, ::-1] * (-1.0, 1.0)  # (-dy, dx)
    normal *= (np.asarray(widths) * 0.5 / (np.hypot(d[:, 0], d[:, 1]) + 1e-12))[:, None]
    return np.concatenate([points + normal, (points - normal)[::-1]])


def _curve(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.stack([x, y], axis=1)


def _there_and_back(values: np.ndarray) -> np.ndarray:
    """Per-point values of a curve, repeated for the return side of its :func:`_stroke` polygon."""
    return np.concatenate([values, values[::-1]])


def _smooth_polygon(points: np.ndarray, iterations: int) -> np.ndarray:
    """Chaikin corner cutting: a rounded closed polygon from a coarse one."""
    for _ in range(iterations):
        nxt = np.roll(points, -1, axis=0)
        points = np.stack([0.75 * points + 0.25 * nxt, 0.25 * points + 0.75 * nxt], axis=1).reshape(-1, 2)
    return points


def _fill(canvas: np.ndarray, points: np.ndarray, colour) -> None:
    cv2.fillPoly(canvas, [np.round(points * _ONE).astype(np.int32)], colour, lineType=cv2.LINE_8, shift=_SHIFT)


class _Scene:
    """Polygons in painting order. Points on the face surface are collected and projected in one
    go (per-frame cost is dominated by the number of numpy calls, not by their size)."""

    def __init__(self) -> None:
        self.points: list[np.ndarray] = []
        self.lifts: list[np.ndarray] = []
        self.count = 0
        self.ops: list[tuple] = []

    def surface(self, points: np.ndarray, lift=0.0) -> slice:
        n = len(points)
        self.points.append(points)
        self.lifts.append(np.full(n, lift) if np.ndim(lift) == 0 else lift)
        self.count += n
        return slice(self.count - n, self.count)

    def fill(self, points: np.ndarray, colour, lift=0.0) -> None:
        """A polygon on the face surface (``lift`` raises it off the ellipsoid, e.g. the nose)."""
        self.ops.append(("surface", self.surface(points, lift), colour))

    def fill_pixels(self, pixels: np.ndarray, colour) -> None:
        self.ops.append(("pixels", pixels, colour))

    def clipped(self, region: np.ndarray, paint, extras: list[np.ndarray], lift=0.0) -> None:
        """Paint inside a surface ``region`` only: ``paint(patch, offset, extras_in_pixels)``."""
        extra_lift = [lift if np.ndim(lift) == 0 or len(e) == len(region) else float(np.mean(lift)) for e in extras]
        self.ops.append(("clipped", self.surface(region, lift), paint, [self.surface(e, el) for e, el in zip(extras, extra_lift)]))


class FaceRenderer:
    """Renders one identity at one size; everything static is computed once.

    ``render(expression, pose)`` returns the (size, size, 3) uint8 RGB frame and its face
    box; it is a pure function of its inputs, so frames can be rendered in any order.
    """

    def __init__(self, appearance: Appearance, size: int):
        if not 16 <= int(size) <= 1024:
            raise ValueError(f"size must be 16..1024 pixels, got {size}")
        a = self.appearance = appearance
        self.size = int(size)
        self.canvas_size = self.size * SUPERSAMPLE
        self.unit = a.head_scale * self.canvas_size  # canvas pixels per face unit
        self.origin = np.array([0.5 * self.canvas_size, a.head_y * self.canvas_size])
        self._base = self._static_layer()
        # Colours and shapes that no coefficient changes.
        self._skin_edge = _mix(a.skin, (0, 0, 0), 0.1)
        self._shadow = _mix(a.skin, (40, 20, 20), 0.5)
        self._crease = _mix(a.skin, (40, 20, 20), 1.0)
        self._nose_shadow = _mix(a.skin, (50, 25, 20), 0.35)
        self._lash = _mix(a.brow_colour, (0, 0, 0), 0.5)
        self._lip_line = _mix(a.lip_colour, (0, 0, 0), 0.55)
        self._nostril = _mix(a.skin, (20, 10, 10), 0.7)
        t = np.linspace(0, 2 * np.pi, 96, endpoint=False)
        y = np.sin(t)
        x = a.head_width * np.cos(t) * np.where(y > 0, 1 - (1 - a.jaw) * np.clip(y, 0, None) ** 1.5, 1.0)  # jaw narrows
        self._outline = _curve(x, y)
        self._jaw_weight = 0.1 * np.clip((y - 0.1) / 0.9, 0, 1) ** 1.5  # how far each point follows the jaw
        self._back_hair = self._back_hair_shapes()
        self._ears = [
            (_ellipse(side * (a.head_width + dx), cy, rx * a.ear_size, ry * a.ear_size, 24), colour)
            for side in (-1, 1)
            for dx, cy, rx, ry, colour in (
                (0.02, 0.05, 0.1, 0.19, _mix(a.skin, (0, 0, 0), 0.16)),
                (0.03, 0.06, 0.045, 0.11, _mix(a.skin, (60, 20, 20), 0.35)),
            )
        ]
        self._cap = self._hair_cap()
        self._cap_colour = _mix(a.skin, a.hair_colour, 0.45) if a.hair_style == "buzz" else a.hair_colour

    # ---- coordinates -------------------------------------------------------------------
    def _set_pose(self, pose) -> None:
        yaw, pitch, roll = (float(p) for p in np.asarray(pose, np.float64).reshape(3))
        cy, sy, cp, sp, cr, sr = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch), math.cos(roll), math.sin(roll)
        r_yaw = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
        r_pitch = np.array([[1, 0, 0], [0, cp, sp], [0, -sp, cp]])
        r_roll = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
        self._rotation = (r_roll @ r_pitch @ r_yaw)[:2].T * self.unit  # (3, 2): face units -> pixels
        self._roll = np.array([[cr, sr], [-sr, cr]]) * self.unit
        self._turn = np.array([sy, sp])
        # The head pivots on the neck: a roll also swings the head sideways.
        self._centre = self.origin + np.array([-sr * 1.3 * self.unit, 0.0])

    def _project(self, xy: np.ndarray, lift: np.ndarray) -> np.ndarray:
        """Canvas pixels of points on the face: on the head ellipsoid (raised by ``lift``), rotated in 3-D."""
        a = self.appearance
        inside = 1.0 - (xy[:, 0] * (1.0 / a.head_width)) ** 2 - xy[:, 1] ** 2
        depth = _HEAD_DEPTH * np.sqrt(np.clip(inside, 0.04, 1.0)) + lift
        return self._centre + xy @ self._rotation[:2] + depth[:, None] * self._rotation[2]

    def _rigid(self, xy: np.ndarray, depth: float = 0.0) -> np.ndarray:
        """Canvas pixels of silhouette-like points (outline, ears, hair): they roll, and shift by their depth."""
        return self._centre + (xy + depth * self._turn) @ self._roll

    def _head(self, jaw_drop: float) -> np.ndarray:
        """The head outline in face units; an open jaw lengthens the face."""
        return self._outline + (jaw_drop * self._jaw_weight)[:, None] * (0.0, 1.0)

    # ---- static layer: background, shoulders ------------------------------------------------
    def _static_layer(self) -> np.ndarray:
        a = self.appearance
        n = self.canvas_size
        coords = (np.arange(n) + 0.5) / n
        yy, xx = np.meshgrid(coords, coords, indexing="ij")
        period = a.pattern_scale
        if a.background_pattern == "plain":
            weight = np.zeros_like(xx)
        elif a.background_pattern == "gradient":
            weight = yy
        elif a.background_pattern == "stripes":
            weight = 0.5 + 0.5 * np.sin(2 * np.pi * (xx + 0.5 * yy) / period)
        elif a.background_pattern == "dots":
            dx = (xx / period) % 1.0 - 0.5
            dy = (yy / period) % 1.0 - 0.5
            weight = np.clip((0.28 - np.hypot(dx, dy)) * period * n / 2 + 0.5, 0.0, 1.0)  # smooth dot edges
        else:  # checker, with softened edges
            weight = 0.5 + 0.5 * np.tanh(4 * np.sin(2 * np.pi * xx / period) * np.sin(2 * np.pi * yy / period))
        weight = weight * 0.6
        base = np.asarray(a.background) * (1 - weight[..., None]) + np.asarray(a.background_accent) * weight[..., None]
        canvas = np.clip(base, 0, 255).astype(np.uint8)
        # Shoulders and neck do not move with the head.
        hw = a.head_width
        body_top = 1.25
        shoulders = np.array(
            [[-hw * 0.5, body_top - 0.05], [hw * 0.5, body_top - 0.05], [hw * 1.9, body_top + 0.35], [hw * 2.6, 3.0], [-hw * 2.6, 3.0], [-hw * 1.9, body_top + 0.35]]
        )
        _fill(canvas, self.origin + _smooth_polygon(shoulders, 6) * self.unit, a.shirt_colour)
        neck = np.array([[-0.3, 0.3], [0.3, 0.3], [0.32, body_top + 0.05], [0.0, body_top + 0.18], [-0.32, body_top + 0.05]])
        _fill(canvas, self.origin + neck * self.unit, _mix(a.skin, (0, 0, 0), 0.22))
        return canvas

    def _back_hair_shapes(self) -> list[tuple[np.ndarray, tuple]]:
        a = self.appearance
        hw, v = a.head_width, a.hair_volume
        if a.hair_style == "long":
            shape = np.array([[-hw - v - 0.05, -0.2], [-hw - v, -0.9], [0, -1.0 - v], [hw + v, -0.9], [hw + v + 0.05, -0.2], [hw + v + 0.15, 1.3], [-hw - v - 0.15, 1.3]])
            return [(_smooth_polygon(shape, 5), _mix(a.hair_colour, (0, 0, 0), 0.15))]
        if a.hair_style == "bun":
            return [(_ellipse(0.0, -0.98 - v, 0.27, 0.2), a.hair_colour)]
        return []

    def _hair_cap(self) -> np.ndarray:
        """Polygon of the hair on the skull: an arc over the head and a hairline across the forehead."""
        a = self.appearance
        hw, v = a.head_width, a.hair_volume
        hairline_y = a.eye_y - a.hairline
        t = np.linspace(np.pi * 1.08, np.pi * 1.92, 40)
        if a.hair_style == "curly":
            v = v + 0.1
            radius = 1 + 0.05 * np.sin(t * 14)
        else:
            radius = np.ones_like(t)
        outer = np.stack([(hw + v) * np.cos(t) * radius, (1 + v) * np.sin(t) * radius - 0.02], axis=1)
        u = np.linspace(1, -1, 30)  # hairline from the right temple back to the left one
        if a.hair_style == "fringe":  # low, but always above the highest a raised brow can go
            fringe_y = min(hairline_y + 0.18, a.eye_y - a.eye_height - a.brow_gap - 0.17 - a.brow_thickness - 0.04)
            line_y = np.full_like(u, fringe_y) - 0.05 * np.abs(u) ** 3
        elif a.hair_style == "side_part":
            line_y = hairline_y + 0.12 * (1 - np.abs(u)) ** 0.5 * (u > -0.3) + 0.05 * np.abs(u) - 0.08
        elif a.hair_style == "buzz":
            line_y = hairline_y - 0.05 - 0.08 * (1 - u**2)
        else:
            line_y = hairline_y - 0.1 * (1 - u**2) + 0.08 * u**4
        side_drop = 0.3 if a.hair_style == "long" else 0.0
        temples = np.array([[hw * 0.98, hairline_y + 0.25 + side_drop]]), np.array([[-hw * 0.98, hairline_y + 0.25 + side_drop]])
        line = np.stack([u * hw * 0.88, line_y], axis=1)
        return np.concatenate([outer, temples[0], line, temples[1]])

    # ---- rendering ------------------------------------------------------------------------------
    def render(self, expression: np.ndarray, pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(frame (size, size, 3) uint8, face box (4,) float32 x0, y0, x1, y1 in frame pixels)."""
        e = clip_expression(np.asarray(expression, np.float64).reshape(NUM_EXPRESSION)).tolist()
        c = dict(zip(EXPRESSION_NAMES, e))
        self._set_pose(pose)
        a = self.appearance
        scene = _Scene()
        for shape, colour in self._back_hair:
            scene.fill_pixels(self._rigid(shape, -0.3), colour)
        for shape, colour in self._ears:
            scene.fill_pixels(self._rigid(shape, -0.35), colour)
        outline = self._head(c["jaw_drop"])
        head = self._rigid(outline)
        scene.fill_pixels(head, self._skin_edge)
        # The lit front of the face: a plate that turns with the head, so yaw shows as shading.
        scene.fill(outline * 0.9, a.skin)
        self._cheeks(scene, c)
        self._forehead_lines(scene, c)
        self._nose(scene, c)
        self._folds(scene, c)
        for side in (-1, 1):
            self._eye(scene, c, side)
            self._brow(scene, c, side)
        self._mouth(scene, c)
        scene.fill_pixels(self._rigid(self._cap), self._cap_colour)

        canvas = self._base.copy()
        self._paint(canvas, scene)
        frame = cv2.resize(canvas, (self.size, self.size), interpolation=cv2.INTER_AREA)
        return frame, self._box(head)

    def face_box(self, expression: np.ndarray, pose: np.ndarray) -> np.ndarray:
        """The face box of :meth:`render` without drawing anything."""
        e = clip_expression(np.asarray(expression, np.float64).reshape(NUM_EXPRESSION))
        self._set_pose(pose)
        return self._box(self._rigid(self._head(float(e[EXPRESSION_INDEX["jaw_drop"]]))))

    def _box(self, head: np.ndarray) -> np.ndarray:
        box = np.concatenate([head.min(axis=0), head.max(axis=0)]) / SUPERSAMPLE
        return np.clip(box, 0, self.size).astype(np.float32)

    def _paint(self, canvas: np.ndarray, scene: _Scene) -> None:
        pixels = self._project(np.concatenate(scene.points), np.concatenate(scene.lifts))
        for op in scene.ops:
            if op[0] == "surface":
                _fill(canvas, pixels[op[1]], op[2])
            elif op[0] == "pixels":
                _fill(canvas, op[1], op[2])
            else:
                self._paint_clipped(canvas, pixels[op[1]], op[2], [pixels[s] for s in op[3]])

    def _paint_clipped(self, canvas: np.ndarray, region: np.ndarray, paint, extras: list[np.ndarray]) -> None:
        x0, y0 = np.maximum(np.floor(region.min(axis=0)).astype(int) - 1, 0)
        x1, y1 = np.minimum(np.ceil(region.max(axis=0)).astype(int) + 2, self.canvas_size)
        if x1 <= x0 or y1 <= y0:
            return
        roi = canvas[y0:y1, x0:x1]
        mask = np.zeros(roi.shape[:2], np.uint8)
        offset = np.array([x0, y0], np.float64)
        _fill(mask, region - offset, 1)
        patch = roi.copy()
        paint(patch, offset, extras)
        np.copyto(roi, patch, where=mask[..., None].view(bool))

    # ---- features -----------------------------------------------------------------------------
    def _cheeks(self, scene: _Scene, c: dict) -> None:
        a = self.appearance
        raise_ = c["cheek_raise"]
        blush = _mix(a.skin, (220, 90, 90), 0.12 + 0.3 * raise_)
        for side in (-1, 1):
            cheek = _ellipse(side * (a.eye_spacing + 0.06), a.eye_y + 0.33 - 0.1 * raise_, 0.14 + 0.03 * raise_, 0.08 + 0.03 * raise_, 24)
            scene.fill(cheek, blush, 0.02)

    def _forehead_lines(self, scene: _Scene, c: dict) -> None:
        a = self.appearance
        raise_ = c["brow_raise"]
        if raise_ > 0.05:  # horizontal forehead lines of a raised brow
            u = _U_LINE
            for k in range(2):
                y = a.eye_y - a.eye_height - a.brow_gap - 0.2 - 0.09 * k - 0.03 * (1 - u**2)
                scene.fill(_stroke(_curve(u * 0.32, y), 0.028 * (1 - u**2) ** 0.5), _mix(a.skin, self._shadow, raise_ * 0.8))
        lower = c["brow_lower"]
        if lower > 0.05:  # vertical frown lines between the brows
            y = np.linspace(a.eye_y - a.eye_height - 0.2, a.eye_y - a.eye_height + 0.02, 10)
            width = 0.03 * np.sin(np.linspace(0.2, np.pi - 0.2, 10))
            for side in (-1, 1):
                line = _curve(side * (0.045 + 0.02 * (y - y[0])), y)
                scene.fill(_stroke(line, width), _mix(a.skin, self._shadow, lower * 0.9))

    def _nose(self, scene: _Scene, c: dict) -> None:
        a = self.appearance
        wrinkle = c["nose_wrinkle"]
        w = a.nose_width * (1 + 0.3 * wrinkle)
        tip = a.nose_y - 0.05 * wrinkle
        # Bridge shadow on one side and the curve under the tip.
        bridge_y = np.linspace(a.eye_y + 0.05, tip - 0.04, 10)
        scene.fill(_stroke(_curve(np.full(10, -0.055), bridge_y), np.linspace(0.01, 0.03, 10)), _mix(a.skin, self._nose_shadow, 0.5), 0.1)
        u = _U_LINE
        base = _curve(u * w, tip + 0.03 - 0.03 * np.cos(u * np.pi / 2) ** 2)
        scene.fill(_stroke(base, 0.03 * np.cos(u * 1.3) + 0.01), self._nose_shadow, 0.15)
        for side in (-1, 1):
            scene.fill(_ellipse(side * w * 0.55, tip + 0.035, 0.035 * (1 + 0.3 * wrinkle), 0.02, 16), self._nostril, 0.12)
        if wrinkle > 0.05:  # horizontal creases across the bridge
            colour = _mix(a.skin, self._crease, wrinkle * 0.75)
            for k in range(3):
                line = _curve(u * 0.08, a.eye_y + 0.06 + 0.055 * k + 0.015 * u**2)
                scene.fill(_stroke(line, 0.022 * np.sqrt(1 - u**2) + 0.002), colour, 0.1)

    def _mouth_corners(self, c: dict) -> tuple[np.ndarray, np.ndarray]:
        """Half-widths and upward lifts of the (left, right) mouth corners."""
        a = self.appearance
        width = a.mouth_width * (1 + 0.22 * c["lip_corner_pull"] + 0.05 * c["lip_corner_depress"] - 0.35 * c["lip_round"] - 0.06 * c["lip_press"])
        asym = c["corner_asym"]
        half = np.array([width, width * (1 + 0.18 * asym)])
        lift = 0.13 * c["lip_corner_pull"] - 0.11 * c["lip_corner_depress"] + np.array([-0.015, 0.14]) * asym
        return half, lift

    def _folds(self, scene: _Scene, c: dict) -> None:
        """Nasolabial folds: from the nose wings to the mouth corners, deeper when smiling or sneering."""
        a = self.appearance
        half, lift = self._mouth_corners(c)
        s = _S_FOLD[:, None]
        width = 0.03 * np.sin(np.pi * (0.1 + 0.8 * _S_FOLD))
        for i, side in enumerate((-1, 1)):
            strength = 0.12 + 0.5 * c["cheek_raise"] + 0.35 * c["lip_corner_pull"] + 0.4 * c["nose_wrinkle"] + (0.5 * c["corner_asym"] if side == 1 else 0.0)
            start = np.array([side * (a.nose_width + 0.05), a.nose_y - 0.02 - 0.04 * c["nose_wrinkle"]])
            end = np.array([side * (half[i] + 0.05), a.mouth_y + 0.07 - lift[i] * 0.6])
            line = start + (end - start) * s + np.array([side * 0.05, 0.0]) * np.sin(np.pi * s)
            scene.fill(_stroke(line, width), _mix(a.skin, (50, 25, 20), min(strength, 1.0) * 0.55))

    def _eye_lids(self, c: dict, side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(u, upper lid y, lower lid y) of one eye; u runs across the eye from -1 to 1."""
        a = self.appearance
        eye_open, tension, cheek = c["eye_open"], c["lid_tension"], c["cheek_raise"]
        lower_open = 0.55 * (1 - 0.45 * tension - 0.5 * cheek)
        upper_open = 0.6 + 0.4 * eye_open if eye_open >= 0 else 0.6 + (0.6 + lower_open) * eye_open
        upper_open = max(upper_open - 0.25 * tension, -lower_open)
        u = _U_EYE
        base = a.eye_y - a.eye_tilt * side * u  # outer corners at u * side = 1
        across = 1 - u**2
        upper = base - upper_open * a.eye_height * across ** (0.7 + 0.5 * tension)
        lower = base + lower_open * a.eye_height * across**0.9
        return u, upper, lower

    def _eye(self, scene: _Scene, c: dict, side: int) -> None:
        a = self.appearance
        u, upper, lower = self._eye_lids(c, side)
        cx = side * a.eye_spacing
        x = cx + u * a.eye_width
        opening = np.concatenate([_curve(x, upper), _curve(x, lower)[::-1]])
        iris_r = a.iris_size * a.eye_height
        centre = np.array([[cx, a.eye_y + 0.1 * a.eye_height], [cx + iris_r, a.eye_y + 0.1 * a.eye_height]])

        def paint(patch: np.ndarray, offset: np.ndarray, extras: list[np.ndarray]) -> None:
            middle, edge = extras[0] - offset
            radius = float(np.hypot(*(edge - middle)))
            patch[:] = _SCLERA_PIXEL
            _fill(patch, _ellipse(*middle, radius, radius, 32), a.iris_colour)
            _fill(patch, _ellipse(*middle, radius * 0.45, radius * 0.45, 16), _PUPIL)
            glint = middle + np.array([0.35, -0.4]) * radius
            _fill(patch, _ellipse(*glint, radius * 0.18, radius * 0.18, 12), (250, 250, 250))

        scene.clipped(opening, paint, [centre])
        across = 1 - u**2
        scene.fill(_stroke(_curve(x, upper), a.eye_height * 0.32 * across**0.3 + 0.006), self._lash)
        fold = upper - a.eye_height * (0.35 + 0.2 * max(c["eye_open"], 0))
        scene.fill(_stroke(_curve(x * 0.95 + cx * 0.05, fold), 0.015 * across), _mix(a.skin, self._crease, 0.35))
        scene.fill(_stroke(_curve(x, lower + 0.005), 0.014 * across), _mix(a.skin, self._crease, 0.3 + 0.3 * c["lid_tension"]))

    def _brow(self, scene: _Scene, c: dict, side: int) -> None:
        a = self.appearance
        raise_, lower = c["brow_raise"], c["brow_lower"]
        s = _S_BROW  # 0 at the inner end, 1 at the outer end
        inner = 1 - s
        x = side * (a.eye_spacing - 0.45 * a.brow_length + s * a.brow_length - 0.05 * lower * inner)
        y = a.eye_y - a.eye_height - a.brow_gap - a.brow_arch * (1 - lower) * np.sin(np.pi * s) ** 0.8
        y = y - 0.17 * raise_ * (0.75 + 0.25 * inner)  # raised brows: the inner ends a little more
        y = y + 0.11 * lower * (0.3 + 0.7 * inner)  # lowered brows: a frown, inner ends down
        y = y - 0.3 * raise_ * lower * inner  # both at once: the slanted brows of sadness and fear
        width = a.brow_thickness * (1 + 0.25 * lower) * (1.0 - 0.45 * s) * np.sin(np.pi * (0.08 + 0.84 * s)) ** 0.4
        scene.fill(_stroke(_curve(x, y), width), a.brow_colour, 0.03)

    def _mouth(self, scene: _Scene, c: dict) -> None:
        a = self.appearance
        half, lift = self._mouth_corners(c)
        jaw, round_, press = c["jaw_drop"], c["lip_round"], c["lip_press"]
        u = _U_MOUTH
        right = u > 0
        across = 1 - u**2
        x = u * np.where(right, half[1], half[0])
        centre_line = a.mouth_y - np.where(right, lift[1], lift[0]) * np.abs(u) ** 2.2
        opening = (0.34 * jaw * (1 - 0.7 * press) + 0.05 * round_ * (1 - press)) * across ** (0.9 - 0.4 * round_)
        snarl = 0.05 * c["nose_wrinkle"] * across  # a wrinkled nose lifts the upper lip
        upper_inner = centre_line - 0.25 * opening - snarl
        lower_inner = centre_line + 0.75 * opening
        fullness = 1 - 0.65 * press + 0.45 * round_
        bow = across**0.6 * (1 - 0.3 * np.exp(-((u / 0.15) ** 2)))
        upper_outer = upper_inner - a.upper_lip * fullness * bow - 0.005
        lower_outer = lower_inner + a.lower_lip * fullness * across**0.6 + 0.005
        lift_lips = 0.08 * round_ * across + 0.05  # rounded lips push forward
        both = _there_and_back(lift_lips)
        scene.fill(np.concatenate([_curve(x, upper_outer), _curve(x, lower_outer)[::-1]]), a.lip_colour, both)
        teeth = np.concatenate([_curve(x, upper_inner), _curve(x * 0.85, upper_inner + 0.06)[::-1]])

        def paint(patch: np.ndarray, offset: np.ndarray, extras: list[np.ndarray]) -> None:
            patch[:] = _MOUTH_PIXEL
            _fill(patch, extras[0] - offset, _TEETH)

        scene.clipped(np.concatenate([_curve(x, upper_inner), _curve(x, lower_inner)[::-1]]), paint, [teeth], both)
        seam = _curve(x, (upper_inner + lower_inner) / 2)
        scene.fill(_stroke(seam, 0.018 * across**0.3 + 0.004), self._lip_line, both)


_SCLERA_PIXEL = np.array(_SCLERA, np.uint8)
_MOUTH_PIXEL = np.array(_MOUTH_INSIDE, np.uint8)


def render_face(identity, expression, pose=(0.0, 0.0, 0.0), size: int = 128) -> np.ndarray:
    """Render one frame of ``identity`` (an :class:`Identity` or :class:`Appearance`) as uint8 (H, W, 3) RGB.

    ``expression`` is the (12,) coefficient vector in :data:`EXPRESSION_NAMES` order and
    ``pose`` (yaw, pitch, roll) in radians. For many frames, reuse a :class:`FaceRenderer`.
    """
    frame, _ = FaceRenderer(_appearance(identity), size).render(expression, pose)
    return frame


def face_box(identity, expression, pose=(0.0, 0.0, 0.0), size: int = 128) -> np.ndarray:
    """The head's box (x0, y0, x1, y1) float32, in pixels of the frame :func:`render_face` draws."""
    return FaceRenderer(_appearance(identity), size).face_box(expression, pose)


def _appearance(identity) -> Appearance:
    return identity if isinstance(identity, Appearance) else identity.appearance
