"""Procedural face renderer: one RGB face and its CelebAMask-HQ parsing map from clean labels.

Every part is a polygon in *face space* (origin near the nose, x to the image's
right, y down, face half-width 1). A :class:`View` projects face-space points to
pixels with a pseudo-3D head (points get a depth from an ellipsoid, so yaw shifts
the features towards the turned side), then roll, scale and translation. Image and
map are drawn by the same calls in the same order, so the map stays aligned under
every geometric change; photometric changes (lighting, noise, blur) touch only the
image. Parts are drawn at ``supersample`` x the output size and box-filtered down.

Class ids follow CelebAMask-HQ (Lee et al., CVPR 2020): ``l_*`` is the person's left,
i.e. the image's right, as in its masks. Facial hair is labelled skin and occluders
background, as CelebAMask-HQ's annotations do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from faceinsight.data.synthface.labels import A
from faceinsight.vocab import EXPRESSIONS

# CelebAMask-HQ's 19 classes.
BACKGROUND, SKIN, NOSE, EYE_G, L_EYE, R_EYE, L_BROW, R_BROW, L_EAR, R_EAR = range(10)
MOUTH, U_LIP, L_LIP, HAIR, HAT, EAR_R, NECK_L, NECK, CLOTH = range(10, 19)
NUM_CLASSES = 19

SURPRISE, FEAR, DISGUST, HAPPINESS, SADNESS, ANGER, NEUTRAL = range(len(EXPRESSIONS))

Colour = tuple[int, ...]

HAIR_RGB: dict[str, Colour] = {
    "Black_Hair": (28, 22, 22),
    "Blond_Hair": (222, 188, 118),
    "Brown_Hair": (104, 66, 38),
    "Gray_Hair": (172, 170, 168),
}
OTHER_HAIR_RGB: tuple[Colour, ...] = ((142, 62, 30), (62, 40, 28), (176, 96, 52))  # auburn, dark brown, ginger
SKIN_LIGHT, SKIN_DARK, SKIN_PALE = np.array([236, 198, 172]), np.array([98, 64, 44]), np.array([248, 228, 218])


@dataclass
class SynthFaceConfig:
    """Knobs of the SynthFace generator (labels and rendering)."""

    size: int = 64  # output image side in pixels
    difficulty: float = 0.5  # 0 = clean frontal faces, 1 = hard (pose, scale, lighting, clutter, blur, occlusion)
    label_noise: float = 0.0  # probability of flipping each returned binary label (images use the clean labels)
    supersample: int = 2  # draw at this multiple of ``size`` and box-filter down (antialiasing)
    max_yaw_deg: float = 40.0  # yaw range at difficulty 1
    max_roll_deg: float = 20.0  # roll range at difficulty 1
    max_noise_std: float = 10.0  # pixel noise std (0-255 scale) at difficulty 1

    def __post_init__(self) -> None:
        if self.size < 16 or self.supersample < 1:
            raise ValueError(f"size must be >= 16 and supersample >= 1, got {self.size}, {self.supersample}")
        if not 0.0 <= self.difficulty <= 1.0 or not 0.0 <= self.label_noise <= 1.0:
            raise ValueError(f"difficulty and label_noise must be in [0, 1], got {self.difficulty}, {self.label_noise}")


def _mix(a: Colour | np.ndarray, b: Colour | np.ndarray, t: float) -> Colour:
    out = (1 - t) * np.asarray(a, dtype=np.float64)[:3] + t * np.asarray(b, dtype=np.float64)[:3]
    return tuple(int(v) for v in np.clip(out, 0, 255))


def _scale(c: Colour, f: float, alpha: int | None = None) -> Colour:
    rgb = tuple(int(min(255, max(0, v * f))) for v in c[:3])
    return rgb if alpha is None else (*rgb, alpha)


_CIRCLE = {n: np.stack([np.cos(t), np.sin(t)], 1) for n in (10, 16, 24) for t in [np.linspace(0, 2 * np.pi, n, False)]}


def ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 16, angle: float = 0.0) -> np.ndarray:
    """Polygon points of an ellipse, ``[n, 2]``."""
    p = _CIRCLE[n] * (rx, ry)
    if angle:
        c, s = math.cos(angle), math.sin(angle)
        p = p @ np.array([[c, s], [-s, c]])
    return p + np.array([cx, cy])


def mirror(pts: np.ndarray) -> np.ndarray:
    return pts * (-1.0, 1.0)


class View:
    """Face space -> pixels: pseudo-3D yaw of the head, then camera roll, scale and translation."""

    def __init__(self, side: int, yaw: float, roll: float, scale: float, shift: tuple[float, float]) -> None:
        self.cy, self.sy = math.cos(yaw), math.sin(yaw)
        self.unit = unit = side * 0.235 * scale  # pixels per face unit
        c, s = math.cos(roll), math.sin(roll)
        self.m = np.array([[c, s], [-s, c]]) * unit
        self.t = np.array([side * (0.5 + shift[0]), side * (0.5 + shift[1])])

    def __call__(self, pts: np.ndarray, dz: float = 0.0, head: bool = True) -> list[float]:
        if head:  # depth from an ellipsoid head surface; features protrude, outline points barely move
            x, y = pts[:, 0], pts[:, 1]
            z = 0.6 * np.sqrt(np.maximum(1.0 - (x * (1 / 1.05)) ** 2 - (y * (1 / 1.6)) ** 2, 0.0)) + dz
            pts = pts.copy()
            pts[:, 0] = x * self.cy + z * self.sy
        return (pts @ self.m + self.t).ravel().tolist()


class Canvas:
    """The RGB image and its parsing map, drawn by the same calls."""

    def __init__(self, side: int, background: Colour, view: View) -> None:
        self.image = Image.new("RGB", (side, side), background)
        self.segmap = Image.new("L", (side, side), BACKGROUND)
        self.draw = ImageDraw.Draw(self.image, "RGBA")
        self.seg = ImageDraw.Draw(self.segmap)
        self.view = view

    def poly(
        self, pts: np.ndarray, colour: Colour | None, cls: int | None = None, dz: float = 0.0, head: bool = True
    ) -> None:
        """Fill a polygon in the image (if ``colour``) and the map (if ``cls``)."""
        xy = self.view(pts, dz, head)
        if colour is not None:
            self.draw.polygon(xy, fill=colour)
        if cls is not None:
            self.seg.polygon(xy, fill=cls)

    def line(
        self, pts: np.ndarray, colour: Colour, width: float, cls: int | None = None, dz: float = 0.0, head: bool = True
    ) -> None:
        """A polyline ``width`` face units wide."""
        xy = self.view(pts, dz, head)
        w = max(1, round(width * self.view.unit))
        self.draw.line(xy, fill=colour, width=w, joint="curve")
        if cls is not None:
            self.seg.line(xy, fill=cls, width=w)


@dataclass
class Look:
    """Per-face appearance drawn from the labels and the face's random stream."""

    skin: Colour
    hair: Colour
    lips: Colour
    eye: Colour
    width: float  # face half-width
    chin: float  # chin depth below the centre
    jaw_power: float  # superellipse exponent of the jaw: 2 round, >2 square, <2 pointed
    asym: np.ndarray  # [4] small left/right jitters (0 for Attractive faces)
    cue: float  # strength of subtle cues, lowered by difficulty
    long_hair: bool
    hair_volume: float


def _look(on: dict[str, bool], age: float, rng: np.random.Generator, difficulty: float) -> Look:
    tone = rng.beta(2.2, 1.6)
    skin = _mix(SKIN_DARK, SKIN_LIGHT, tone)
    if on["Pale_Skin"]:
        skin = _mix(skin, SKIN_PALE, 0.75)
    colours = [n for n in HAIR_RGB if on[n]]
    hair = HAIR_RGB[colours[0]] if colours else OTHER_HAIR_RGB[rng.integers(len(OTHER_HAIR_RGB))]
    hair = _scale(hair, rng.uniform(0.85, 1.15))
    if on["Wearing_Lipstick"]:
        lips = _mix((200, 30, 60), (150, 20, 40), rng.random())
    else:
        lips = _mix(skin, (170, 80, 80), 0.45 + 0.1 * rng.random())
    eye = _mix((60, 40, 25), (70, 110, 150), rng.random() * (tone > 0.5))
    width = 1.0 + 0.12 * on["Chubby"] - 0.08 * on["Oval_Face"] + rng.normal(0, 0.03)
    chin = 1.32 + 0.15 * on["Oval_Face"] - 0.05 * on["Chubby"] + rng.normal(0, 0.03)
    if on["Oval_Face"]:
        jaw = 1.75
    elif on["Chubby"]:
        jaw = 2.1
    else:
        jaw = 2.6 if on["Male"] else 2.15
    jaw += rng.normal(0, 0.12)
    asym = np.zeros(4) if on["Attractive"] else rng.normal(0, 0.035, 4)
    long_hair = (not on["Male"] and rng.random() < 0.8) or (on["Male"] and rng.random() < 0.08)
    cue = 1.0 - 0.45 * difficulty * rng.random()
    return Look(skin, hair, lips, eye, width, chin, jaw, asym, cue, long_hair, rng.uniform(0.05, 0.2))


def face_outline(look: Look, n: int = 28) -> np.ndarray:
    """Forehead half-ellipse on top, superellipse jaw below (eq.: |x/w|^p + |y/c|^p = 1)."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    e = 2.0 / look.jaw_power
    lower = s > 0
    x = np.where(lower, np.sign(c) * np.abs(c) ** e, c) * look.width
    y = np.where(lower, np.abs(s) ** e * look.chin, s * 1.3)
    return np.stack([x, y], 1)


def _eye_shape(hw: float, h: float, n: int = 6) -> np.ndarray:
    x = np.linspace(-hw, hw, n)
    bump = np.sqrt(np.clip(1 - (x / hw) ** 2, 0, 1))
    upper = np.stack([x, -h * bump], 1)
    lower = np.stack([x[::-1], 0.75 * h * bump[::-1]], 1)
    return np.concatenate([upper, lower[1:-1]])


def _band(x: np.ndarray, y_top: np.ndarray, y_bottom: np.ndarray) -> np.ndarray:
    """Polygon between two curves over the same x samples."""
    return np.concatenate([np.stack([x, y_top], 1), np.stack([x[::-1], y_bottom[::-1]], 1)])


def _expression_shape(expr: int, on: dict[str, bool]) -> dict[str, float]:
    """Brow raise/tilt, eye opening and mouth parameters of the 7 basic expressions (FACS-style cues:
    raised brows and wide eyes for Surprise/Fear, lowered inner brows for Anger, inner-raised brows and
    down-turned corners for Sadness, raised upper lip and narrowed eyes for Disgust; Ekman, 1978)."""
    shape = {"raise": 0.0, "inner": 0.0, "eye": 1.0, "corner": 0.0, "open": 0.0, "width": 1.0, "upper": 0.0}
    shape.update(
        {
            SURPRISE: {"raise": 0.13, "eye": 1.45, "width": 0.8},
            FEAR: {"raise": 0.09, "inner": 0.07, "eye": 1.35, "width": 1.12, "corner": -0.03},
            DISGUST: {"raise": -0.04, "inner": -0.03, "eye": 0.7, "upper": 0.06, "corner": -0.04},
            HAPPINESS: {"raise": 0.02, "eye": 0.85},
            SADNESS: {"inner": 0.09, "raise": -0.02, "eye": 0.85, "corner": -0.08},
            ANGER: {"inner": -0.1, "raise": -0.05, "eye": 0.8, "width": 0.9, "corner": -0.03},
            NEUTRAL: {},
        }[expr]
    )
    if on["Smiling"]:
        shape["corner"] = 0.12 + 0.05 * (expr == HAPPINESS)
        shape["width"] *= 1.12
    if on["Mouth_Slightly_Open"]:
        shape["open"] = {SURPRISE: 0.3, FEAR: 0.22}.get(expr, 0.13)
    return shape


def render_face(
    attributes: np.ndarray, age: float, expression: int, rng: np.random.Generator, config: SynthFaceConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Render one face: uint8 image ``[S, S, 3]`` and uint8 parsing map ``[S, S]`` (classes 0..18)."""
    on = {name: bool(attributes[j]) for name, j in A.items()}
    d = config.difficulty
    side = config.size * config.supersample
    look = _look(on, age, rng, d)
    yaw = math.radians(config.max_yaw_deg) * d * rng.uniform(-1, 1)
    roll = math.radians(config.max_roll_deg) * d * rng.uniform(-1, 1)
    scale = math.exp(rng.uniform(-0.25, 0.2) * d) * rng.uniform(0.95, 1.05)
    shift = tuple(rng.uniform(-0.09, 0.09, 2) * d + (0.0, 0.02))
    background = tuple(int(v) for v in rng.integers(30, 230, 3))
    canvas = Canvas(side, background, View(side, yaw, roll, scale, (float(shift[0]), float(shift[1]))))
    _draw_clutter(canvas, rng, d, side)
    shape = _expression_shape(expression, on)
    _draw_body(canvas, on, look, rng)
    _draw_head(canvas, on, look, age, shape, rng)
    _draw_hair_and_headwear(canvas, on, look, rng)
    _draw_occluder(canvas, rng, d, side, look)
    return _finish(canvas, on, rng, config)


def _draw_clutter(canvas: Canvas, rng: np.random.Generator, d: float, side: int) -> None:
    """Background shapes (image only: the map stays background)."""
    for _ in range(rng.poisson(9 * d)):
        colour = (*(int(v) for v in rng.integers(0, 256, 3)), 255)
        x0, y0 = rng.uniform(-0.1, 1.0, 2) * side
        w, h = rng.uniform(0.05, 0.5, 2) * side
        kind = rng.integers(3)
        if kind == 0:
            canvas.draw.rectangle((x0, y0, x0 + w, y0 + h), fill=colour)
        elif kind == 1:
            canvas.draw.ellipse((x0, y0, x0 + w, y0 + h), fill=colour)
        else:
            canvas.draw.line((x0, y0, x0 + w, y0 + h * rng.choice([-1, 1])), fill=colour, width=max(1, side // 40))


def _draw_body(canvas: Canvas, on: dict[str, bool], look: Look, rng: np.random.Generator) -> None:
    if look.long_hair and not on["Bald"]:  # hair falling behind the shoulders
        end = rng.uniform(1.6, 2.6)
        w = 1.3 + look.hair_volume
        back = np.array([[-w, -0.4], [-w - 0.1, end], [w + 0.1, end], [w, -0.4], [0, -1.5]])
        canvas.poly(back, _scale(look.hair, 0.85), HAIR, dz=-0.5)
    neck_colour = _scale(look.skin, 0.86)
    canvas.poly(np.array([[-0.5, 0.6], [-0.55, 2.6], [0.55, 2.6], [0.5, 0.6]]), neck_colour, NECK, head=False)
    cloth = tuple(int(v) for v in rng.integers(10, 240, 3))
    top = 2.05 + rng.uniform(-0.1, 0.15)
    shoulders = np.array([[-3.0, 3.2], [-2.6, top + 0.25], [-0.55, top - 0.1], [0, top + 0.35], [0.55, top - 0.1],
                          [2.6, top + 0.25], [3.0, 3.2]])  # fmt: skip
    canvas.poly(shoulders, cloth, CLOTH, head=False)
    if on["Wearing_Necktie"]:
        shirt = (235, 235, 235)
        canvas.poly(np.array([[-0.6, top - 0.15], [0, top + 0.45], [0.6, top - 0.15], [0.35, 3.2], [-0.35, 3.2]]),
                    shirt, CLOTH, head=False)  # fmt: skip
        tie = tuple(int(v) for v in rng.integers(20, 200, 3))
        canvas.poly(np.array([[-0.14, top + 0.05], [0.14, top + 0.05], [0.08, top + 0.25], [0.2, 3.2], [-0.2, 3.2],
                              [-0.08, top + 0.25]]), tie, CLOTH, head=False)  # fmt: skip
    if on["Wearing_Necklace"]:
        metal = (232, 200, 90) if rng.random() < 0.6 else (220, 220, 225)
        t = np.linspace(-1, 1, 9)
        drop = rng.uniform(0.35, 0.6)
        canvas.line(np.stack([0.5 * t, 1.45 + drop * (1 - t**2)], 1), metal, 0.09, NECK_L, head=False)
        canvas.poly(ellipse(0, 1.47 + drop, 0.07, 0.08, 10), metal, NECK_L, head=False)


def _draw_head(
    canvas: Canvas, on: dict[str, bool], look: Look, age: float, shape: dict[str, float], rng: np.random.Generator
) -> None:
    skin = look.skin
    ear_colour = _scale(skin, 0.93)
    for sign, cls in ((1, L_EAR), (-1, R_EAR)):
        canvas.poly(ellipse(sign * (look.width - 0.02), -0.02, 0.18, 0.32), ear_colour, cls, dz=-0.45)
        canvas.line(
            ellipse(sign * (look.width + 0.02), -0.02, 0.08, 0.2, 10)[2:9], _scale(skin, 0.75, 120), 0.03, dz=-0.4
        )
    canvas.poly(ellipse(0, -0.45, look.width * 1.08, 1.25, 24), skin, SKIN)  # skull, under the hair
    outline = face_outline(look)
    if on["Double_Chin"]:
        canvas.poly(ellipse(0, look.chin - 0.05, 0.55, 0.3), _scale(skin, 0.95), SKIN)
        canvas.line(ellipse(0, look.chin + 0.05, 0.45, 0.18)[2:7], _scale(skin, 0.7, 140), 0.04)
    canvas.poly(outline, skin, SKIN)
    _draw_skin_cues(canvas, on, look, age, shape, rng)
    _draw_nose(canvas, on, look, rng)
    _draw_eyes(canvas, on, look, shape, rng)
    _draw_facial_hair(canvas, on, look, age)
    _draw_mouth(canvas, on, look, shape)


def _draw_skin_cues(
    canvas: Canvas, on: dict[str, bool], look: Look, age: float, shape: dict[str, float], rng: np.random.Generator
) -> None:
    """Image-only shading on the skin: cheeks, makeup, wrinkles, bags, blemishes."""
    cue, skin = look.cue, look.skin
    for sign in (1, -1):
        if on["Rosy_Cheeks"]:
            canvas.poly(ellipse(sign * 0.55, 0.28, 0.26, 0.18), (235, 80, 90, int(110 * cue)))
        if on["Heavy_Makeup"]:
            canvas.poly(ellipse(sign * 0.6, 0.25, 0.25, 0.14, angle=-sign * 0.5), (220, 110, 120, int(60 * cue)))
        if on["High_Cheekbones"]:
            canvas.poly(ellipse(sign * 0.58, 0.08, 0.26, 0.1, angle=-sign * 0.35), (255, 245, 235, int(70 * cue)))
            canvas.poly(ellipse(sign * 0.7, 0.45, 0.22, 0.08, angle=sign * 0.7), (60, 30, 20, int(55 * cue)))
        if on["Bags_Under_Eyes"]:
            canvas.poly(ellipse(sign * 0.42, 0.0, 0.2, 0.07, angle=-sign * 0.15), (90, 50, 60, int(90 * cue)))
    wrinkle = float(np.clip((age - 32.0) / 35.0, 0.0, 1.0)) * cue
    dark = _scale(skin, 0.6, int(40 + 110 * wrinkle))
    if wrinkle > 0.05:
        for k in range(1 + int(3 * wrinkle)):
            y = -0.72 - 0.13 * k
            canvas.line(np.array([[-0.5, y + 0.02], [0, y - 0.02], [0.5, y + 0.02]]), dark, 0.025)
        for sign in (1, -1):
            for k in (-1, 0, 1):
                canvas.line(np.array([[sign * 0.68, -0.15], [sign * 0.82, -0.15 + 0.07 * k]]), dark, 0.02)
    if wrinkle > 0.05 or on["Smiling"]:  # nasolabial folds
        for sign in (1, -1):
            canvas.line(
                np.array([[sign * 0.22, 0.38], [sign * 0.38, 0.6], [sign * 0.4, 0.8]]), _scale(skin, 0.7, 90), 0.03
            )
    if not on["Attractive"]:  # blemishes and uneven skin
        for _ in range(rng.integers(2, 6)):
            x, y = rng.uniform(-0.7, 0.7), rng.uniform(-0.9, 0.9)
            canvas.poly(ellipse(x, y, 0.04, 0.04, 10), _scale(skin, 0.8, int(110 * cue)))
    if shape["upper"] > 0:  # disgust: wrinkled nose bridge
        canvas.line(np.array([[-0.1, -0.05], [0.1, -0.05]]), dark, 0.02, dz=0.1)


def _draw_nose(canvas: Canvas, on: dict[str, bool], look: Look, rng: np.random.Generator) -> None:
    big, pointy = on["Big_Nose"], on["Pointy_Nose"]
    wing = 0.17 + 0.07 * big
    tip_y = 0.36 + 0.06 * big + 0.03 * pointy
    top_w = 0.07 + 0.02 * big
    if pointy:
        nose = np.array([[-top_w, -0.18], [-wing * 0.8, tip_y - 0.12], [-wing, tip_y - 0.02], [0, tip_y + 0.06],
                         [wing, tip_y - 0.02], [wing * 0.8, tip_y - 0.12], [top_w, -0.18]])  # fmt: skip
    else:
        nose = np.array([[-top_w, -0.18], [-wing * 0.9, tip_y - 0.15], [-wing - 0.02, tip_y - 0.02],
                         [-0.08, tip_y + 0.02], [0.08, tip_y + 0.02], [wing + 0.02, tip_y - 0.02],
                         [wing * 0.9, tip_y - 0.15], [top_w, -0.18]])  # fmt: skip
    canvas.poly(nose, _scale(look.skin, 0.97), NOSE, dz=0.12)
    shadow_side = 1 if rng.random() < 0.5 else -1
    canvas.line(
        np.array([[shadow_side * top_w, -0.1], [shadow_side * wing * 0.9, tip_y - 0.08]]),
        _scale(look.skin, 0.72, 130),
        0.04,
        dz=0.15,
    )
    for sign in (1, -1):
        canvas.poly(
            ellipse(sign * wing * 0.5, tip_y - 0.02, 0.05 + 0.015 * big, 0.03, 10), _scale(look.skin, 0.45), dz=0.2
        )


def _draw_eyes(
    canvas: Canvas, on: dict[str, bool], look: Look, shape: dict[str, float], rng: np.random.Generator
) -> None:
    glasses = on["Eyeglasses"]
    sunglasses = glasses and rng.random() < 0.25
    lens_rx, lens_ry = 0.27 + 0.04 * rng.random(), 0.19 + 0.03 * rng.random()
    if glasses:  # map only: the glasses region under the eyes and brows (CelebAMask-HQ's overwrite order)
        for sign in (1, -1):
            canvas.poly(ellipse(sign * 0.43, -0.14, lens_rx + 0.03, lens_ry + 0.03), None, EYE_G, dz=0.08)
        canvas.line(np.array([[-0.18, -0.2], [0.18, -0.2]]), (0, 0, 0, 0), 0.06, EYE_G, dz=0.1)
    open_ = shape["eye"] * (0.55 if on["Narrow_Eyes"] else 1.0)
    gaze = rng.normal(0, 0.02, 2)
    for k, (sign, eye_cls, brow_cls) in enumerate(((1, L_EYE, L_BROW), (-1, R_EYE, R_BROW))):
        cx, cy = sign * 0.42 + look.asym[k], -0.15 + look.asym[k + 2] * 0.5
        hw, h = 0.19, 0.085 * open_
        eye = _eye_shape(hw, h) + np.array([cx, cy])
        if not sunglasses:
            canvas.poly(eye, (240, 238, 232), eye_cls, dz=0.02)
            r = 0.075
            canvas.poly(ellipse(cx + gaze[0], cy + gaze[1], r, min(r, h * 0.9), 10), look.eye, dz=0.03)
            canvas.poly(
                ellipse(cx + gaze[0], cy + gaze[1], r * 0.45, min(r, h * 0.9) * 0.45, 10), (15, 12, 12), dz=0.03
            )
            liner = 0.045 if on["Heavy_Makeup"] else 0.025
            canvas.line(eye[:6], (30, 22, 22), liner, dz=0.03)
            if on["Heavy_Makeup"]:
                shadow = _mix((150, 90, 160), (120, 80, 60), rng.random())
                canvas.poly(ellipse(cx, cy - h - 0.05, 0.2, 0.06), (*shadow, int(150 * look.cue)), dz=0.02)
        _draw_brow(canvas, on, look, shape, sign, cx, brow_cls)
    if glasses:
        frame = (20, 20, 20) if rng.random() < 0.7 else (150, 120, 60)
        tint = (20, 20, 25, 235) if sunglasses else (200, 220, 235, 50)
        for sign in (1, -1):
            lens = ellipse(sign * 0.43, -0.14, lens_rx, lens_ry)
            canvas.poly(lens, tint, dz=0.08)
            canvas.line(np.concatenate([lens, lens[:1]]), frame, 0.05, dz=0.08)
            canvas.line(
                np.array([[sign * (0.43 + lens_rx), -0.16], [sign * (look.width + 0.02), -0.12]]), frame, 0.04, dz=0.0
            )
        canvas.line(np.array([[-0.16, -0.2], [0.16, -0.2]]), frame, 0.04, dz=0.1)


def _draw_brow(
    canvas: Canvas, on: dict[str, bool], look: Look, shape: dict[str, float], sign: int, cx: float, cls: int
) -> None:
    x = np.linspace(0.16, 0.72, 7)
    u = (x - 0.16) / 0.56
    arch = 0.13 if on["Arched_Eyebrows"] else 0.04
    centre = (
        -0.44 - shape["raise"] - shape["inner"] * (1 - u) - arch * np.sin(np.pi * np.clip(u * 0.8, 0, 1)) + 0.05 * u
    )
    thick = (0.12 if on["Bushy_Eyebrows"] else 0.065 if on["Male"] else 0.05) * (1.1 - 0.5 * u**2)
    band = _band(sign * x + (cx - sign * 0.42), centre - thick / 2, centre + thick / 2)
    brow = _scale(look.hair, 0.8) if look.hair[0] < 120 else _scale(look.hair, 0.55)
    canvas.poly(band, brow, cls, dz=0.02)


def _draw_facial_hair(canvas: Canvas, on: dict[str, bool], look: Look, age: float) -> None:
    """Beards are drawn on the skin and stay skin in the map."""
    colour = _mix(look.hair, (170, 170, 170), 0.6) if age > 55 else look.hair
    colour = _scale(colour, 0.8)
    if on["5_o_Clock_Shadow"]:
        jaw = face_outline(look)
        lower = jaw[(jaw[:, 1] > 0.2)] * 0.98
        canvas.poly(np.concatenate([lower, [[-0.5, 0.5], [0.5, 0.5]]]), (70, 60, 70, int(70 * look.cue)))
    full_beard = not on["No_Beard"] and not on["5_o_Clock_Shadow"] and on["Goatee"] == on["Mustache"]
    if full_beard:
        jaw = face_outline(look)
        lower = jaw[jaw[:, 1] > 0.05]
        inner = np.array([[-0.4, 0.6], [-0.3, 0.95], [0.3, 0.95], [0.4, 0.6]])
        canvas.poly(np.concatenate([lower, inner]), (*colour, 225))
    if on["Goatee"]:
        canvas.poly(
            np.array([[-0.3, 0.88], [-0.25, look.chin - 0.02], [0.25, look.chin - 0.02], [0.3, 0.88]]), (*colour, 235)
        )
    if on["Mustache"]:
        canvas.poly(np.array([[-0.38, 0.66], [-0.2, 0.5], [0.2, 0.5], [0.38, 0.66], [0, 0.6]]), (*colour, 240), dz=0.05)
    if on["Sideburns"]:
        for sign in (1, -1):
            w = look.width
            strip = np.array([[w - 0.16, -0.45], [w - 0.12, 0.35], [w, 0.3], [w, -0.45]]) * (sign, 1)
            canvas.poly(strip, look.hair, HAIR)


def _draw_mouth(canvas: Canvas, on: dict[str, bool], look: Look, shape: dict[str, float]) -> None:
    mw = 0.33 * shape["width"]
    my = 0.72 + look.asym[0] * 0.3
    x = np.linspace(-mw, mw, 9)
    u = x / mw
    bump = np.sqrt(1 - u**2)
    contact = my - shape["corner"] * u**2 + look.asym[1] * u * 0.5
    opening = shape["open"] * (1 - u**2)
    upper_in = contact - 0.35 * opening - shape["upper"] * bump
    lower_in = contact + 0.65 * opening
    big = 1.5 if on["Big_Lips"] else 1.0
    upper_out = (
        upper_in
        - 0.07 * big * bump
        - 0.015 * np.exp(-(((u - 0.3) / 0.2) ** 2))
        - 0.015 * np.exp(-(((u + 0.3) / 0.2) ** 2))
    )
    lower_out = lower_in + 0.09 * big * bump
    if shape["open"] > 0:
        canvas.poly(_band(x, upper_in - 0.01, lower_in + 0.01), (60, 15, 20), MOUTH, dz=0.05)
        if on["Smiling"]:
            canvas.poly(
                _band(x[1:-1], upper_in[1:-1], upper_in[1:-1] + 0.35 * (lower_in - upper_in)[1:-1]),
                (235, 232, 222),
                MOUTH,
                dz=0.05,
            )
    canvas.poly(_band(x, upper_out, upper_in), _scale(look.lips, 0.92), U_LIP, dz=0.06)
    canvas.poly(_band(x, lower_in, lower_out), look.lips, L_LIP, dz=0.06)
    canvas.line(
        np.stack([x, contact], 1) if shape["open"] == 0 else np.stack([x[:2], contact[:2]], 1),
        (70, 30, 30, 160),
        0.02,
        dz=0.06,
    )


def _hairline(on: dict[str, bool], rng: np.random.Generator, width: float) -> np.ndarray:
    """Hairline from the right temple to the left one."""
    x = np.linspace(width + 0.05, -width - 0.05, 15)
    v = np.abs(x) / (width + 0.05)
    if on["Bangs"]:
        centre, k = -0.5 + rng.uniform(-0.04, 0.04), 6.0
        y = centre + (-0.3 - centre) * v**k + 0.04 * (np.arange(15) % 2)
    else:
        centre, k = (-1.05, 3.0) if on["Receding_Hairline"] else (-0.88 + rng.uniform(-0.05, 0.05), 4.0)
        y = centre + (-0.3 - centre) * v**k
        if on["Receding_Hairline"]:
            y = y - 0.22 * np.exp(-(((np.abs(x) - 0.55) / 0.2) ** 2))
    return np.stack([x, y], 1)


def _draw_hair_and_headwear(canvas: Canvas, on: dict[str, bool], look: Look, rng: np.random.Generator) -> None:
    w = look.width * 1.08 + look.hair_volume
    if not on["Bald"]:
        t = np.linspace(np.pi, 2 * np.pi, 15)  # skull top, left temple to right
        ry = 1.25 + look.hair_volume
        top = np.stack([w * np.cos(t), -0.45 + ry * np.sin(t)], 1)
        if on["Wavy_Hair"]:
            top *= 1 + 0.04 * np.sin(np.arange(15) * 2.2)[:, None]
        hairline = _hairline(on, rng, look.width)
        canvas.poly(np.concatenate([top, [[w, -0.3]], hairline, [[-w, -0.3]]]), look.hair, HAIR, dz=-0.1)
        if look.long_hair:
            end = rng.uniform(1.0, 1.9)
            for sign in (1, -1):
                if on["Wearing_Earrings"]:  # hair tucked behind the ears
                    side = np.array(
                        [
                            [sign * w, -0.45],
                            [sign * (w + 0.1), end],
                            [sign * (w + 0.35), end],
                            [sign * (w + 0.3), -0.45],
                        ]
                    )
                else:
                    side = np.array([[sign * (look.width - 0.12), -0.45], [sign * (look.width + 0.0), end],
                                     [sign * (w + 0.3), end], [sign * (w + 0.2), -0.45]])  # fmt: skip
                canvas.poly(side, look.hair, HAIR, dz=-0.1)
        _draw_hair_texture(canvas, on, look, top, hairline)
    if on["Wearing_Hat"]:
        hat = tuple(int(v) for v in rng.integers(10, 240, 3))
        brim_y = -0.95 + rng.uniform(-0.1, 0.1)
        t = np.linspace(np.pi, 2 * np.pi, 13)
        crown = np.stack([1.18 * np.cos(t), brim_y + 0.95 * np.sin(t)], 1)
        canvas.poly(crown, hat, HAT, dz=-0.1)
        if rng.random() < 0.6:  # a brim
            canvas.poly(ellipse(0, brim_y, 1.55, 0.16), _scale(hat, 0.8), HAT, dz=-0.1)
    if on["Wearing_Earrings"]:
        metal = (235, 205, 80) if rng.random() < 0.6 else (215, 215, 225)
        r = rng.uniform(0.05, 0.1)
        for sign in (1, -1):
            canvas.poly(ellipse(sign * (look.width + 0.02), 0.36 + r, r, r * 1.2, 10), metal, EAR_R, dz=-0.3)


def _draw_hair_texture(canvas: Canvas, on: dict[str, bool], look: Look, top: np.ndarray, hairline: np.ndarray) -> None:
    """Strands inside the hair cap (image only): straight lines or waves; none for other textures."""
    if not (on["Straight_Hair"] or on["Wavy_Hair"]):
        return
    light = _scale(look.hair, 1.35 if look.hair[0] < 150 else 0.75, 150)
    for k in range(1, 14, 2):
        a = top[k]
        b = hairline[14 - k] * (1.0, 1.0) + (0.0, -0.05)
        s = np.linspace(0, 1, 6)[:, None]
        pts = a * (1 - s) * 0.9 + b * s * 0.98 + (0, 0.06)
        if on["Wavy_Hair"]:
            pts[:, 0] += 0.06 * np.sin(s[:, 0] * 9 + k)
        canvas.line(pts, light, 0.025, dz=-0.1)


def _draw_occluder(canvas: Canvas, rng: np.random.Generator, d: float, side: int, look: Look) -> None:
    """With probability growing with difficulty, an object or hand over part of the face: background in the map."""
    if rng.random() >= 0.3 * d:
        return
    cx, cy = rng.uniform(0.2, 0.8) * side, rng.uniform(0.45, 0.95) * side
    rx, ry = rng.uniform(0.06, 0.16, 2) * side
    colour = _scale(look.skin, 0.95) if rng.random() < 0.5 else tuple(int(v) for v in rng.integers(0, 256, 3))
    box = (cx - rx, cy - ry, cx + rx, cy + ry)
    if rng.random() < 0.5:
        canvas.draw.ellipse(box, fill=colour)
        canvas.seg.ellipse(box, fill=BACKGROUND)
    else:
        canvas.draw.rectangle(box, fill=colour)
        canvas.seg.rectangle(box, fill=BACKGROUND)


def _finish(
    canvas: Canvas, on: dict[str, bool], rng: np.random.Generator, config: SynthFaceConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Downsample, then lighting gradient, colour jitter, noise and blur (image only)."""
    d, ss, size = config.difficulty, config.supersample, config.size
    image = canvas.image.reduce(ss) if ss > 1 else canvas.image
    seg = np.asarray(canvas.segmap)[ss // 2 :: ss, ss // 2 :: ss]
    sigma = rng.uniform(0.0, 0.7) * d
    if on["Blurry"]:
        sigma = rng.uniform(1.2, 2.0)
    if sigma > 0.2:
        image = image.filter(ImageFilter.GaussianBlur(sigma * size / 64))
    img = np.asarray(image, dtype=np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.arange(size, dtype=np.float32) / (size - 1) - 0.5) * 2
    strength = 0.5 * d * rng.random()
    light = 1 + strength * (math.cos(angle) * ramp[None, :] + math.sin(angle) * ramp[:, None])
    gain = 1 + rng.uniform(-0.2, 0.2, 3).astype(np.float32) * d
    img = img * light[:, :, None] * gain
    noise_std = 1.5 + config.max_noise_std * d * rng.random()
    img += rng.standard_normal(img.shape, dtype=np.float32) * noise_std
    return np.clip(img, 0, 255).astype(np.uint8), seg.astype(np.uint8)
