"""
Synthetic camera scenes with exact ground truth, cheap enough for a 30 fps camera node.

Over 400 lines as one concern: the scene, its renderer and its ground truth (with occlusion)
must change together or the ground truth lies.

Why synthetic: the package must run and be tested end to end on machines with
no camera and no data set, and its accuracy must be measurable.  A scene is a
deterministic function of ``(seed, frame index)``, so any frame can be
rendered at random access, the same frames can be re-rendered for training and
for evaluation, and different seeds give disjoint train / held-out sequences.

Four object classes (``CLASS_NAMES``) move on smooth bouncing trajectories,
overlap each other, enter and leave, over a textured background with sensor
noise.  Everything large (background, noise tiles) is made once per scene;
a frame costs one copy, two saturating adds and a few ``cv2`` fills.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Iterator, Optional, Union

import cv2
import numpy as np

#: Object classes, in class-id order.
CLASS_NAMES: tuple[str, ...] = ('ball', 'box', 'cone', 'person')

# Ground truth keeps an object only if at least this fraction of its full shape is visible
# (inside the image and not hidden behind objects in front of it).
MIN_VISIBLE_FRACTION = 0.3
# The occlusion check draws shapes on a small label map whose longer side is about this.
_LABEL_MAP_SIDE = 320
# Extra rows / columns of the noise tiles; a frame reads a window at an index-dependent offset.
_NOISE_PAD = 48


#: An axis-aligned ellipse: centre x, centre y, half-axis x, half-axis y (full-scale pixels).
_Ellipse = tuple[float, float, float, float]


@dataclass(frozen=True)
class GroundTruth:
    """
    Boxes and classes of the objects visible in one frame.

    ``boxes`` is (N, 4) float32 ``x_min, y_min, x_max, y_max`` in image pixels,
    clipped to the image; ``class_ids`` is (N,) int32, an index into ``CLASS_NAMES``.
    """

    boxes: np.ndarray
    class_ids: np.ndarray

    def __len__(self) -> int:
        """Return the number of objects."""
        return int(self.class_ids.shape[0])


@dataclass(frozen=True)
class _Track:
    """One object's appearance and motion during one life of its slot."""

    class_id: int
    colour: tuple[int, int, int]
    accent: tuple[int, int, int]
    width: float         # full extent of the shape in pixels (before rotation for boxes)
    height: float
    x0: float            # centre at the first frame of this life
    y0: float
    vx: float            # pixels per frame
    vy: float
    wobble_amp: float    # sinusoidal sway added to the straight bouncing path
    wobble_period: float
    wobble_phase: float
    angle0: float        # degrees, boxes only
    spin: float          # degrees per frame, boxes only
    start: int           # first frame index of this life
    length: int          # frames it lives (always-present slots: effectively unbounded)


def _bounce(position: float, low: float, high: float) -> float:
    """Fold a straight-line position into [low, high] as a ball bouncing off both walls."""
    span = high - low
    if span <= 0.0:
        return low
    m = (position - low) % (2.0 * span)
    return low + (m if m <= span else 2.0 * span - m)


class SyntheticScene:
    """
    A deterministic, unbounded sequence of frames with moving objects and ground truth.

    Each seed is one sequence (its own background, noise and objects); the frame
    index is time.  The first ``min_objects`` object slots are present in every
    frame and bounce forever; the other slots come and go, each life with a new
    class, look and path, so the number of objects varies between
    ``min_objects`` and ``max_objects``.
    """

    def __init__(self, width: int = 640, height: int = 480, seed: int = 0,
                 min_objects: int = 2, max_objects: int = 6, noise_sigma: float = 6.0) -> None:
        """Precompute the background and noise tiles of the sequence ``seed``."""
        if width < 32 or height < 32:
            raise ValueError('image must be at least 32x32 pixels')
        if not 1 <= min_objects <= max_objects:
            raise ValueError('need 1 <= min_objects <= max_objects')
        if noise_sigma < 0:
            raise ValueError('noise_sigma must be >= 0')
        self.width = int(width)
        self.height = int(height)
        self.seed = int(seed)
        self.min_objects = int(min_objects)
        self.max_objects = int(max_objects)
        self.noise_sigma = float(noise_sigma)
        self.num_classes = len(CLASS_NAMES)

        rng = np.random.default_rng([self.seed, 0x5CE4E])
        self._background = self._make_background(rng)
        self._bg_mean = self._background.reshape(-1, 3).mean(axis=0)
        self._noise_pos, self._noise_neg = self._make_noise(rng)

        # Slot timing: always-present slots live forever, the others have lives of
        # varying length separated by gaps.
        self._slot_period = rng.integers(90, 240, size=self.max_objects)
        self._slot_phase = rng.integers(0, 10_000, size=self.max_objects)
        self._slot_duty = rng.uniform(0.45, 0.85, size=self.max_objects)
        self._track_cache: dict[tuple[int, int], _Track] = {}

        # Occlusion check buffers, reused every frame.
        self._map_scale = min(1.0, _LABEL_MAP_SIDE / max(self.width, self.height))
        map_w = max(8, int(round(self.width * self._map_scale)))
        map_h = max(8, int(round(self.height * self._map_scale)))
        self._label_map = np.zeros((map_h, map_w), np.uint8)

    # ------------------------------------------------------------------ construction
    def _make_background(self, rng: np.random.Generator) -> np.ndarray:
        """Return a textured (H, W, 3) uint8 background: a gradient plus one texture family."""
        h, w = self.height, self.width
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        xx /= max(w - 1, 1)
        yy /= max(h - 1, 1)
        c0 = rng.uniform(40, 215, 3)
        c1 = rng.uniform(40, 215, 3)
        angle = rng.uniform(0, 2 * math.pi)
        t = (xx * math.cos(angle) + yy * math.sin(angle))
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        img = c0[None, None, :] * (1 - t[..., None]) + c1[None, None, :] * t[..., None]

        kind = int(rng.integers(0, 5))
        amp = rng.uniform(12, 35)
        side = min(h, w)
        if kind == 0:    # stripes at a random angle
            period = rng.uniform(0.03, 0.12) * side
            a2 = rng.uniform(0, math.pi)
            s = np.sin((xx * w * math.cos(a2) + yy * h * math.sin(a2)) * 2 * math.pi / period)
            tex = s[..., None] * amp * rng.uniform(0.4, 1.0, 3)[None, None, :]
        elif kind == 1:  # checkerboard (floor tiles)
            cell = rng.uniform(0.04, 0.15) * side
            chk = ((np.floor(xx * w / cell) + np.floor(yy * h / cell)) % 2) * 2 - 1
            tex = chk[..., None] * amp * rng.uniform(0.4, 1.0, 3)[None, None, :]
        elif kind == 2:  # soft blobs (low-frequency noise)
            small = rng.normal(0, 1, (int(rng.integers(4, 10)), int(rng.integers(4, 10)), 3))
            tex = cv2.resize(small.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
            tex = tex * amp * 1.2
        elif kind == 3:  # grid lines (walls, shelves)
            cell = rng.uniform(0.06, 0.2) * side
            thick = max(1.0, 0.08 * cell)
            lines = ((xx * w) % cell < thick) | ((yy * h) % cell < thick)
            tex = np.where(lines[..., None], -amp * 1.5, 0.0) * np.ones(3)[None, None, :]
        else:            # fine grain (carpet / asphalt) over soft blobs
            small = rng.normal(0, 1, (6, 8, 3)).astype(np.float32)
            tex = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC) * amp
            grain = rng.normal(0, 1, (max(h // 4, 2), max(w // 4, 2), 1)).astype(np.float32)
            tex = tex + cv2.resize(grain, (w, h), interpolation=cv2.INTER_NEAREST)[..., None] * 8
        img = img + tex

        # A few faint background clutter patches (not objects: thin outlines and smudges).
        img = np.clip(img, 0, 255).astype(np.uint8)
        for _ in range(int(rng.integers(0, 6))):
            colour = tuple(int(v) for v in rng.uniform(30, 225, 3))
            x1, y1 = int(rng.uniform(0, w)), int(rng.uniform(0, h))
            x2 = int(x1 + rng.uniform(0.1, 0.4) * w)
            y2 = int(y1 + rng.uniform(0.05, 0.3) * h)
            cv2.rectangle(img, (x1, y1), (x2, y2), colour, thickness=int(rng.integers(1, 4)))
        return np.ascontiguousarray(img)

    def _make_noise(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Return the positive and negative parts of a Gaussian noise tile, as uint8."""
        shape = (self.height + _NOISE_PAD, self.width + _NOISE_PAD, 3)
        if self.noise_sigma == 0:
            zero = np.zeros(shape, np.uint8)
            return zero, zero
        noise = rng.standard_normal(shape, dtype=np.float32) * self.noise_sigma
        np.clip(noise, -127, 127, out=noise)
        pos = np.clip(noise, 0, None).astype(np.uint8)
        neg = np.clip(-noise, 0, None).astype(np.uint8)
        return pos, neg

    # ------------------------------------------------------------------ objects
    def _slot_life(self, slot: int, index: int) -> Optional[tuple[int, int, int]]:
        """Return (life number, life start, life length) of ``slot`` at ``index``, or None."""
        if slot < self.min_objects:
            return 0, 0, 1 << 62
        period = int(self._slot_period[slot])
        shifted = index + int(self._slot_phase[slot])
        life = shifted // period
        start = life * period - int(self._slot_phase[slot])
        length = max(1, int(period * float(self._slot_duty[slot])))
        if index - start >= length:
            return None
        return life, start, length

    def _track(self, slot: int, life: int, start: int, length: int) -> _Track:
        """Return the object of ``slot`` during ``life`` (cached, deterministic)."""
        key = (slot, life)
        track = self._track_cache.get(key)
        if track is not None:
            return track
        if len(self._track_cache) > 64:
            self._track_cache.clear()
        rng = np.random.default_rng([self.seed, 0x0B1EC7, slot, life])
        side = float(min(self.width, self.height))
        class_id = int(rng.integers(0, self.num_classes))
        size = side * float(rng.uniform(0.07, 0.24))
        if class_id == 0:     # ball: round
            width = height = size
        elif class_id == 1:   # box: any aspect
            aspect = float(np.exp(rng.uniform(-0.7, 0.7)))
            width, height = size * math.sqrt(aspect), size / math.sqrt(aspect)
        elif class_id == 2:   # cone: taller than wide
            width = size * float(rng.uniform(0.55, 0.9))
            height = size * float(rng.uniform(1.0, 1.3))
        else:                 # person: tall and narrow
            height = size * float(rng.uniform(1.2, 1.6))
            width = height * float(rng.uniform(0.32, 0.45))
        colour = self._pick_colour(rng)
        blue, green, red = (int(v) for v in np.clip(np.array(colour) * rng.uniform(0.35, 0.7)
                                                    + rng.uniform(0, 60), 0, 255))
        accent = (blue, green, red)
        speed = side * float(rng.uniform(0.002, 0.012))
        heading = float(rng.uniform(0, 2 * math.pi))
        track = _Track(
            class_id=class_id, colour=colour, accent=accent,
            width=width, height=height,
            x0=float(rng.uniform(0, self.width)), y0=float(rng.uniform(0, self.height)),
            vx=speed * math.cos(heading), vy=speed * math.sin(heading),
            wobble_amp=side * float(rng.uniform(0.0, 0.04)),
            wobble_period=float(rng.uniform(40, 160)), wobble_phase=float(rng.uniform(0, 6.3)),
            angle0=float(rng.uniform(-35, 35)) if class_id == 1 else 0.0,
            spin=float(rng.uniform(-0.6, 0.6)) if class_id == 1 else 0.0,
            start=start, length=length)
        self._track_cache[key] = track
        return track

    def _pick_colour(self, rng: np.random.Generator) -> tuple[int, int, int]:
        """Return a random BGR colour that stands out from the scene's mean background colour."""
        best, best_dist = None, -1.0
        for _ in range(8):
            hsv = np.array([[[rng.uniform(0, 180), rng.uniform(60, 255), rng.uniform(50, 255)]]],
                           np.uint8)
            bgr = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float64)
            dist = float(np.linalg.norm(bgr - self._bg_mean))
            if dist > best_dist:
                best, best_dist = bgr, dist
            if dist > 90:
                break
        assert best is not None  # the loop runs at least once
        return int(best[0]), int(best[1]), int(best[2])

    def _pose(self, track: _Track, index: int) -> tuple[float, float, float]:
        """Return the centre (x, y) and rotation (degrees) of ``track`` at frame ``index``."""
        t = float(index - track.start)
        hw, hh = 0.5 * track.width, 0.5 * track.height
        # The centre may leave the image by up to a quarter of the object, so objects
        # are sometimes cut by the image border.
        mx, my = 0.25 * track.width, 0.25 * track.height
        sway = track.wobble_amp * math.sin(2 * math.pi * t / track.wobble_period
                                           + track.wobble_phase)
        cx = _bounce(track.x0 + track.vx * t + sway * 0.6, hw - mx, self.width - hw + mx)
        cy = _bounce(track.y0 + track.vy * t + sway, hh - my, self.height - hh + my)
        return cx, cy, track.angle0 + track.spin * t

    def _objects(self, index: int) -> list[tuple[_Track, float, float, float]]:
        """Return the objects present at ``index``, back to front, with their poses."""
        objs = []
        for slot in range(self.max_objects):
            life = self._slot_life(slot, index)
            if life is None:
                continue
            track = self._track(slot, *life)
            objs.append((track, *self._pose(track, index)))
        return objs

    # ------------------------------------------------------------------ drawing
    @staticmethod
    def _shape_polys(track: _Track, cx: float, cy: float,
                     angle: float) -> tuple[list[np.ndarray], list[_Ellipse]]:
        """Return the polygons and ellipses (full-scale pixels) that make up one object."""
        w, h = track.width, track.height
        polys: list[np.ndarray] = []
        ellipses: list[_Ellipse] = []
        if track.class_id == 0:
            ellipses.append((cx, cy, 0.5 * w, 0.5 * h))
        elif track.class_id == 1:
            c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
            corners = np.array([[-w, -h], [w, -h], [w, h], [-w, h]], np.float64) * 0.5
            rot = corners @ np.array([[c, s], [-s, c]]) + (cx, cy)
            polys.append(rot)
        elif track.class_id == 2:
            polys.append(np.array([[cx, cy - 0.5 * h], [cx + 0.5 * w, cy + 0.5 * h],
                                   [cx - 0.5 * w, cy + 0.5 * h]], np.float64))
        else:
            head_r = 0.5 * min(0.2 * h, 0.95 * w)
            head_cy = cy - 0.5 * h + head_r
            ellipses.append((cx, head_cy, head_r, head_r))
            body_top = head_cy + head_r * 1.15
            body_h = cy + 0.5 * h - body_top
            # Rounded body: shoulders ellipse plus a trunk narrowing to the feet.
            ellipses.append((cx, body_top + 0.25 * body_h, 0.5 * w, 0.25 * body_h))
            polys.append(np.array([[cx - 0.5 * w, body_top + 0.25 * body_h],
                                   [cx + 0.5 * w, body_top + 0.25 * body_h],
                                   [cx + 0.3 * w, cy + 0.5 * h],
                                   [cx - 0.3 * w, cy + 0.5 * h]], np.float64))
        return polys, ellipses

    @staticmethod
    def _fill(img: np.ndarray, polys: list[np.ndarray], ellipses: list[_Ellipse],
              colour: Union[tuple[int, ...], int], scale: float) -> None:
        """Fill the given shapes into ``img``, coordinates multiplied by ``scale``."""
        shift = 4
        k = scale * (1 << shift)
        for ex, ey, ax, ay in ellipses:
            cv2.ellipse(img, (int(round(ex * k)), int(round(ey * k))),
                        (max(1, int(round(ax * k))), max(1, int(round(ay * k)))),
                        0, 0, 360, colour, -1, cv2.LINE_8, shift)
        if polys:
            cv2.fillPoly(img, [np.round(p * k).astype(np.int32) for p in polys], colour,
                         cv2.LINE_8, shift)

    def _draw_details(self, img: np.ndarray, track: _Track, cx: float, cy: float,
                      polys: list[np.ndarray]) -> None:
        """Add the per-class details that make classes look distinct (inside the shape)."""
        w, h = track.width, track.height
        if track.class_id == 0:      # specular highlight
            r = max(1, int(0.18 * w))
            cv2.circle(img, (int(cx - 0.2 * w), int(cy - 0.2 * h)), r,
                       tuple(min(255, c + 80) for c in track.colour), -1)
        elif track.class_id == 1:    # edge outline
            cv2.polylines(img, [np.round(polys[0]).astype(np.int32)], True, track.accent,
                          max(1, int(0.06 * min(w, h))))
        elif track.class_id == 2:    # reflective band
            y1 = cy + 0.05 * h
            y2 = cy + 0.22 * h
            f1, f2 = (y1 - (cy - 0.5 * h)) / h, (y2 - (cy - 0.5 * h)) / h
            band = np.array([[cx - 0.5 * w * f1, y1], [cx + 0.5 * w * f1, y1],
                             [cx + 0.5 * w * f2, y2], [cx - 0.5 * w * f2, y2]])
            cv2.fillPoly(img, [np.round(band).astype(np.int32)], (235, 235, 235))
        else:                        # arms
            cv2.line(img, (int(cx - 0.42 * w), int(cy - 0.1 * h)),
                     (int(cx - 0.36 * w), int(cy + 0.12 * h)), track.accent,
                     max(1, int(0.12 * w)))
            cv2.line(img, (int(cx + 0.42 * w), int(cy - 0.1 * h)),
                     (int(cx + 0.36 * w), int(cy + 0.12 * h)), track.accent,
                     max(1, int(0.12 * w)))

    # ------------------------------------------------------------------ public
    @property
    def background(self) -> np.ndarray:
        """Give a read-only view of the static background, without objects or noise."""
        view: np.ndarray = self._background.view()
        view.flags.writeable = False
        return view

    def ground_truth(self, index: int) -> GroundTruth:
        """Return only the ground truth of frame ``index`` (no image is drawn)."""
        return self._render(index, None)[1]

    def render(self, index: int,
               out: Optional[np.ndarray] = None) -> tuple[np.ndarray, GroundTruth]:
        """
        Frame ``index`` of this scene: (H, W, 3) uint8 BGR image and its ground truth.

        Deterministic for ``(seed, index)``; when ``out`` is given (right shape and
        dtype) the frame is drawn into it and ``out`` itself is returned.
        """
        if out is None:
            out = np.empty((self.height, self.width, 3), np.uint8)
        elif (out.shape != (self.height, self.width, 3) or out.dtype != np.uint8
              or not out.flags.c_contiguous):
            raise ValueError(f'out must be a C-contiguous ({self.height}, {self.width}, 3) '
                             f'uint8 array')
        return self._render(index, out)

    def _render(self, index: int, out: Optional[np.ndarray]) -> tuple[np.ndarray, GroundTruth]:
        """Draw frame ``index`` into ``out`` (if given) and compute its ground truth."""
        index = int(index)
        if index < 0:
            raise ValueError('frame index must be >= 0')
        objs = self._objects(index)
        if out is not None:
            np.copyto(out, self._background)

        label = self._label_map
        label.fill(0)
        full_px = np.zeros(len(objs), np.int64)
        boxes = np.zeros((len(objs), 4), np.float32)
        for k, (track, cx, cy, angle) in enumerate(objs):
            polys, ellipses = self._shape_polys(track, cx, cy, angle)
            pts = list(polys)
            for ex, ey, ax, ay in ellipses:
                pts.append(np.array([[ex - ax, ey - ay], [ex + ax, ey + ay]]))
            allp = np.concatenate(pts, axis=0)
            boxes[k] = (allp[:, 0].min(), allp[:, 1].min(), allp[:, 0].max(), allp[:, 1].max())
            # Full-shape pixel count on an unbounded canvas (analytic area scaled to the
            # label map); visible = this object's pixels left on the map after later
            # (nearer) objects are drawn over it.
            full_px[k] = max(1, int(self._area(track) * self._map_scale ** 2))
            self._fill(label, polys, ellipses, k + 1, self._map_scale)
            if out is not None:
                self._fill(out, polys, ellipses, track.colour, 1.0)
                self._draw_details(out, track, cx, cy, polys)

        if out is not None and self.noise_sigma > 0:
            oy = (index * 7) % _NOISE_PAD
            ox = (index * 13 + index // _NOISE_PAD) % _NOISE_PAD
            h, w = self.height, self.width
            cv2.add(out, self._noise_pos[oy:oy + h, ox:ox + w], dst=out)
            oy2 = (index * 11 + 5) % _NOISE_PAD
            ox2 = (index * 3 + 17) % _NOISE_PAD
            cv2.subtract(out, self._noise_neg[oy2:oy2 + h, ox2:ox2 + w], dst=out)

        visible = np.bincount(label.ravel(), minlength=len(objs) + 1)[1:len(objs) + 1]
        keep = visible >= MIN_VISIBLE_FRACTION * full_px
        np.clip(boxes[:, 0::2], 0, self.width, out=boxes[:, 0::2])
        np.clip(boxes[:, 1::2], 0, self.height, out=boxes[:, 1::2])
        keep &= (boxes[:, 2] - boxes[:, 0] >= 2) & (boxes[:, 3] - boxes[:, 1] >= 2)
        gt = GroundTruth(boxes=np.ascontiguousarray(boxes[keep]),
                         class_ids=np.array([o[0].class_id for o in objs], np.int32)[keep])
        if out is None:
            return np.empty((0, 0, 3), np.uint8), gt
        return out, gt

    @staticmethod
    def _area(track: _Track) -> float:
        """Return the analytic area in pixels of the object's full shape."""
        w, h = track.width, track.height
        if track.class_id == 0:
            return math.pi * 0.25 * w * h
        if track.class_id == 1:
            return w * h
        if track.class_id == 2:
            return 0.5 * w * h
        head_r = 0.5 * min(0.2 * h, 0.95 * w)
        body_top = head_r * 2.15
        body_h = h - body_top
        shoulders = math.pi * 0.5 * w * 0.25 * body_h * 0.5  # lower half is inside the trunk
        trunk = 0.8 * w * 0.75 * body_h
        return math.pi * head_r ** 2 + shoulders + trunk

    def frames(self, start: int = 0, stop: Optional[int] = None,
               step: int = 1) -> Iterator[tuple[int, np.ndarray, GroundTruth]]:
        """
        Yield ``(index, image, ground_truth)`` for frames ``start, start + step, ...``.

        One buffer is reused, so copy the image if it must outlive the next frame.
        """
        buf = np.empty((self.height, self.width, 3), np.uint8)
        index = start
        while stop is None or index < stop:
            img, gt = self.render(index, buf)
            yield index, img, gt
            index += step
