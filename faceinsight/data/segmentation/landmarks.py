"""An offline face parser from MediaPipe's face mesh and selfie segmentation, rasterised into CelebAMask-HQ classes.

MediaPipe 0.10.21 is the last release whose wheel ships the legacy ``solutions`` models (face mesh with 468
landmarks, face detection, selfie segmentation); it runs on CPU with no download. Parts come from the mesh's own
``FACEMESH_*`` connection sets (``mediapipe/python/solutions/face_mesh_connections.py``): the face oval is skin,
eyes, brows and nose are polygons of their landmarks, and the lip contours split into upper lip, lower lip and the
inner mouth. The rest of the head comes from the selfie-segmentation person mask: a neck band below the chin,
clothes below that, and what remains of the person outside the face is hair. Ears, glasses, hats and earrings are
not estimated.

Install with ``pip install -c constraints.txt --no-deps -r requirements/landmarks.txt``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from scipy.spatial import ConvexHull

from faceinsight.data.segmentation.base import CLASSES, SegSource, check_images

log = logging.getLogger(__name__)

MEDIAPIPE_VERSION = "0.10.21"
RASTER_VERSION = 1  # bump when the rasterisation changes, so cached maps are rebuilt
INSTALL_HINT = (
    "the landmark face parser needs mediapipe==0.10.21: "
    "pip install -c constraints.txt --no-deps -r requirements/landmarks.txt"
)
ID = {name: i for i, name in enumerate(CLASSES)}
Edges = frozenset[tuple[int, int]]


def import_mediapipe() -> Any:
    """Import mediapipe, or raise an ImportError that says how to install it."""
    try:
        import mediapipe
    except ImportError as e:
        raise ImportError(INSTALL_HINT) from e
    if mediapipe.__version__ != MEDIAPIPE_VERSION:
        log.warning("mediapipe %s found; the landmark parser is built for %s", mediapipe.__version__, MEDIAPIPE_VERSION)
    return mediapipe


@dataclass(frozen=True)
class Geometry:
    """The face mesh's landmark index sets, taken from mediapipe's FACEMESH_* constants."""

    oval: Edges
    nose: Edges
    lips: Edges
    left_eye: Edges  # mediapipe's "left" is the person's left (image right), as is CelebAMask-HQ's "l_"
    right_eye: Edges
    left_brow: Edges
    right_brow: Edges

    @classmethod
    def from_mediapipe(cls, mp: Any) -> Geometry:
        c = mp.solutions.face_mesh_connections
        return cls(
            c.FACEMESH_FACE_OVAL, c.FACEMESH_NOSE, c.FACEMESH_LIPS, c.FACEMESH_LEFT_EYE,
            c.FACEMESH_RIGHT_EYE, c.FACEMESH_LEFT_EYEBROW, c.FACEMESH_RIGHT_EYEBROW,
        )  # fmt: skip


@dataclass(frozen=True)
class HeadShape:
    """Proportions (in face heights / widths) of the regions the mesh does not cover."""

    neck_length: float = 0.45  # chin to the top of the clothes, in face heights
    neck_half_width: float = 0.32  # in face widths
    hair_below_chin: float = 0.1  # person pixels more than this far below the chin (and not neck) are clothes
    ear_offset: tuple[float, float] = (0.05, 0.12)  # ear centre beyond the face's widest point (face widths, heights)
    ear_radii: tuple[float, float] = (0.07, 0.14)  # ear ellipse semi-axes (face widths, heights)
    ear_colour_distance: float = 60.0  # an ear pixel's RGB lies this close to the median skin colour
    # Draw the inner mouth only if its area is this fraction of the outer lip contour's: mediapipe's inner contour
    # of a closed mouth measured 0.05-0.15 on the shared CelebAMask-HQ samples.
    min_mouth_opening: float = 0.25


def chains(edges: Edges) -> list[list[int]]:
    """Order an edge set into its connected polylines; a cycle is returned without repeating its first vertex."""
    adjacent: dict[int, list[int]] = {}
    for a, b in edges:
        adjacent.setdefault(a, []).append(b)
        adjacent.setdefault(b, []).append(a)
    seen: set[int] = set()
    out = []
    # Start open paths at an end (degree 1) so they come out whole; then the remaining cycles.
    for start in sorted(adjacent, key=lambda v: (len(adjacent[v]) != 1, v)):
        if start in seen:
            continue
        path, prev, cur = [start], None, start
        seen.add(start)
        while True:
            nxt = [n for n in adjacent[cur] if n != prev and n not in seen]
            if not nxt:
                break
            prev, cur = cur, nxt[0]
            path.append(cur)
            seen.add(cur)
        out.append(path)
    return out


def polygon_area(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def outline(edges: Edges, pts: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Closed outline of a part: its cycle, or two open polylines (upper, lower) joined end to end along ``u``."""
    lines = chains(edges)
    if len(lines) == 1:
        return pts[lines[0]]
    a, b = (pts[line] for line in lines[:2])
    a = a if (a[-1] - a[0]) @ u >= 0 else a[::-1]
    b = b if (b[-1] - b[0]) @ u >= 0 else b[::-1]
    return np.concatenate([a, b[::-1]])


def split_cycle(cycle: np.ndarray, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split a closed contour at its extreme points along ``u`` into (upper, lower) chains, both running along ``u``."""
    s = cycle @ u
    i, j = sorted((int(s.argmin()), int(s.argmax())))
    one, two = cycle[i : j + 1], np.concatenate([cycle[j:], cycle[: i + 1]])[::-1]
    if s[i] > s[j]:  # both chains must start at the minimum along u
        one, two = one[::-1], two[::-1]
    return (one, two) if (one @ v).mean() <= (two @ v).mean() else (two, one)


def face_axes(pts: np.ndarray, g: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors across the face (person's right eye -> left eye) and down it, in image coordinates."""
    left = pts[sorted({i for e in g.left_eye for i in e})].mean(0)
    right = pts[sorted({i for e in g.right_eye for i in e})].mean(0)
    u = (left - right) / max(float(np.linalg.norm(left - right)), 1e-6)
    if u[0] < 0:  # a mirrored image: keep "down" pointing down
        u = -u
    return u, np.array([-u[1], u[0]])


def _fill(canvas: ImageDraw.ImageDraw, points: np.ndarray, class_name: str) -> None:
    if len(points) >= 3:
        canvas.polygon([tuple(p) for p in points.astype(np.float64)], fill=ID[class_name])


def rasterize(
    image: np.ndarray,
    pts: np.ndarray,
    person: np.ndarray | None,
    g: Geometry,
    shape: HeadShape = HeadShape(),
) -> np.ndarray:
    """Parsing map ``[H, W]`` uint8 of RGB ``image`` ``[H, W, 3]`` from its mesh landmarks ``pts`` ``[468+, 2]``
    (pixels) and person mask ``[H, W]`` (None: face parts only)."""
    h, w = image.shape[:2]
    u, v = face_axes(pts, g)
    oval = pts[chains(g.oval)[0]]
    su, sv = oval @ u, oval @ v
    face_w, face_h, chin = su.max() - su.min(), sv.max() - sv.min(), sv.max()
    centre_u = float(pts[sorted({i for e in g.nose for i in e})].mean(0) @ u)

    label = np.zeros((h, w), np.uint8)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    pu, pv = xs * u[0] + ys * u[1], xs * v[0] + ys * v[1]
    if person is not None:
        below = (pv - chin) / face_h  # in face heights below the chin
        neck = (
            person
            & (below > -0.3)
            & (below < shape.neck_length)
            & (np.abs(pu - centre_u) < shape.neck_half_width * face_w)
        )
        cloth = person & ~neck & (below > shape.hair_below_chin)
        label[person] = ID["hair"]
        label[cloth] = ID["cloth"]
        label[neck] = ID["neck"]

    canvas_image = Image.fromarray(label)
    canvas = ImageDraw.Draw(canvas_image)
    _fill(canvas, oval, "skin")
    nose = pts[sorted({i for e in g.nose for i in e})]
    _fill(canvas, nose[ConvexHull(nose).vertices], "nose")
    for edges, name in (
        (g.left_brow, "l_brow"),
        (g.right_brow, "r_brow"),
        (g.left_eye, "l_eye"),
        (g.right_eye, "r_eye"),
    ):
        _fill(canvas, outline(edges, pts, u), name)
    outer, inner = sorted((pts[c] for c in chains(g.lips)), key=polygon_area, reverse=True)[:2]
    (outer_up, outer_low), (inner_up, inner_low) = split_cycle(outer, u, v), split_cycle(inner, u, v)
    _fill(canvas, np.concatenate([outer_up, inner_up[::-1]]), "u_lip")
    _fill(canvas, np.concatenate([outer_low, inner_low[::-1]]), "l_lip")
    if polygon_area(inner) > shape.min_mouth_opening * polygon_area(outer):
        _fill(canvas, inner, "mouth")
    label = np.array(canvas_image)
    if person is not None:
        add_ears(label, image, person, (pu, pv), oval, (u, v), shape)
    return label


def add_ears(
    label: np.ndarray,
    image: np.ndarray,
    person: np.ndarray,
    coords: tuple[np.ndarray, np.ndarray],
    oval: np.ndarray,
    axes: tuple[np.ndarray, np.ndarray],
    shape: HeadShape,
) -> None:
    """Label skin-coloured person pixels in an ellipse beside each side of the face oval as ears (in place)."""
    (pu, pv), (u, v) = coords, axes
    su, sv = oval @ u, oval @ v
    face_w, face_h = su.max() - su.min(), sv.max() - sv.min()
    skin = label == ID["skin"]
    if not skin.any():
        return
    reference = np.median(image[skin].astype(np.float32), axis=0)
    skin_coloured = np.linalg.norm(image.astype(np.float32) - reference, axis=-1) < shape.ear_colour_distance
    candidates = person & skin_coloured & (label != ID["skin"]) & (label != ID["neck"])
    (du, dv), (ru, rv) = shape.ear_offset, shape.ear_radii
    # mediapipe's (and CelebAMask-HQ's) left is the person's left: the +u side.
    for side, name in ((1.0, "l_ear"), (-1.0, "r_ear")):
        k = int((side * su).argmax())
        cu = su[k] + side * du * face_w
        cv = sv[k] + dv * face_h
        inside = ((pu - cu) / (ru * face_w)) ** 2 + ((pv - cv) / (rv * face_h)) ** 2 <= 1
        label[inside & candidates] = ID[name]


class LandmarkParser(SegSource):
    """Face parsing from MediaPipe landmarks; images with no detected face map to all background.

    ``detect_size``: images whose shorter side is smaller are upscaled (bicubic) to it before MediaPipe runs, since
    its face detector misses faces in tiny images; the map is drawn at the input resolution either way.
    ``hair``: estimate hair, neck and clothes from the selfie-segmentation mask (otherwise only face parts).
    """

    def __init__(
        self,
        detect_size: int = 256,
        min_detection_confidence: float = 0.5,
        hair: bool = True,
        person_threshold: float = 0.5,
        shape: HeadShape | None = None,
    ) -> None:
        self.mp = import_mediapipe()
        self.geometry = Geometry.from_mediapipe(self.mp)
        self.detect_size, self.min_detection_confidence = detect_size, min_detection_confidence
        self.hair, self.person_threshold = hair, person_threshold
        self.shape = shape or HeadShape()
        # Every parameter that changes the maps is in the name (the cache keys on it); HeadShape as a short hash.
        shape_hash = hashlib.sha256(json.dumps(asdict(self.shape), sort_keys=True).encode()).hexdigest()[:8]
        self.name = (
            f"landmarks-mp{MEDIAPIPE_VERSION}-r{RASTER_VERSION}-d{detect_size}-c{min_detection_confidence}"
            + (f"-hair{person_threshold}" if hair else "-nohair")
            + f"-shape{shape_hash}"
        )
        self.images_seen = 0
        self.faces_missed = 0
        self.last_missed: list[int] = []
        self._mesh: Any = None
        self._selfie: Any = None

    def __getstate__(self) -> dict[str, Any]:  # MediaPipe graphs and modules do not pickle: rebuild them lazily
        return {k: v for k, v in self.__dict__.items() if k not in ("mp", "_mesh", "_selfie")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, mp=import_mediapipe(), _mesh=None, _selfie=None)

    def _models(self) -> tuple[Any, Any]:
        if self._mesh is None:
            solutions = self.mp.solutions
            self._mesh = solutions.face_mesh.FaceMesh(
                static_image_mode=True, max_num_faces=1, min_detection_confidence=self.min_detection_confidence
            )
            self._selfie = solutions.selfie_segmentation.SelfieSegmentation(model_selection=0) if self.hair else None
        return self._mesh, self._selfie

    def parse(self, image: np.ndarray) -> np.ndarray | None:
        """Map ``[H, W]`` uint8 of one RGB image ``[H, W, 3]``, or None when no face is found."""
        h, w = image.shape[:2]
        mesh, selfie = self._models()
        scale = max(1.0, self.detect_size / min(h, w))
        big = image
        if scale > 1:
            size = (round(w * scale), round(h * scale))
            big = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BICUBIC))
        found = mesh.process(big).multi_face_landmarks
        if not found:
            return None
        pts = np.array([(p.x * w, p.y * h) for p in found[0].landmark], dtype=np.float64)
        person = None
        if selfie is not None:
            prob = selfie.process(big).segmentation_mask
            if prob.shape != (h, w):
                prob = np.asarray(Image.fromarray(prob).resize((w, h), Image.Resampling.BILINEAR))
            person = prob > self.person_threshold
        return rasterize(image, pts, person, self.geometry, self.shape)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images)
        out = torch.zeros((images.shape[0], *images.shape[2:]), dtype=torch.long)
        self.last_missed = []
        for i, img in enumerate(images.permute(0, 2, 3, 1).contiguous().numpy()):
            label = self.parse(img)
            if label is None:
                self.last_missed.append(i)
            else:
                out[i] = torch.from_numpy(label.astype(np.int64))
        missed = len(self.last_missed)
        self.images_seen += len(images)
        self.faces_missed += missed
        if missed:  # per batch at debug level; the cache logs the total when a build ends
            log.debug(
                "no face in %d of %d images (%d of %d so far)", missed, len(images), self.faces_missed, self.images_seen
            )
        return out

    def close(self) -> None:
        """Release the MediaPipe graphs."""
        for model in (self._mesh, self._selfie):
            if model is not None:
                model.close()
        self._mesh = self._selfie = None
