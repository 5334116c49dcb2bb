"""Procedural chest radiographs with five findings drawn from their radiological signs.

No chest X-ray data set installs offline, so the case study draws its own PA films (the
patient's right lung on the image's left). A density map is painted at twice the output
resolution — soft tissue, two air-filled lungs with vessel markings, ribs, clavicles, spine,
mediastinum, heart, diaphragm domes — then blurred, averaged down, exposed (contrast,
brightness, gamma) and noised. A finding changes only what its sign changes, and the masks that
define each sign travel with the image, so tests can measure the sign instead of trusting it.

An image is a pure function of (finding, seed, size). Anatomy, exposure, markings and the
finding draw from separate child streams of the seed: the same seed with another finding shows
the same patient with another disease.
"""

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgetune.errors import EdgetuneError

FINDINGS: tuple[str, ...] = ("normal", "pneumonia", "effusion", "cardiomegaly", "pneumothorax")
LATERAL_FINDINGS = frozenset({"pneumonia", "effusion", "pneumothorax"})
SIDES: tuple[str, ...] = ("right", "left")
CTR_RANGES: dict[bool, tuple[float, float]] = {False: (0.38, 0.46), True: (0.56, 0.68)}
_SS = 2  # supersampling factor: thin ribs and pleural lines stay visible at 64 px
_ZOOM = 0.88  # anatomical units per half image: the thorax fills the film as in real ones
_REAL_PACKAGE = "pneumonia_model_package"


class CaseStudyDataError(EdgetuneError):
    """A case-study data request names something that cannot be produced."""


@dataclass(frozen=True, eq=False)
class Masks:
    """Boolean regions at output resolution: what each sign is measured on."""

    heart: np.ndarray
    right_lung: np.ndarray  # visible lung field (heart and mediastinum removed)
    left_lung: np.ndarray
    lesion: np.ndarray  # opacity, fluid or pneumothorax space; empty when there is none
    vessels: np.ndarray  # where the patient's vessel markings run (drawn only in aerated lung)


@dataclass(eq=False)
class XRay:
    """One radiograph: `image` is float32 in [0, 1], `side` is the patient's side or None,
    `ctr` the cardiothoracic ratio measured on `masks`, `seed` reproduces it via `render`."""

    image: np.ndarray
    finding: str
    side: str | None
    ctr: float
    seed: int
    masks: Masks = field(repr=False)


@dataclass(frozen=True)
class _Anatomy:
    """One patient's geometry in anatomical units (x, y in [-1, 1], y down, x=0 midline)."""

    half_width: float  # lateral edge of each lung
    medial: float  # medial edge of each lung
    apex: float
    waist: float  # row of the widest lung
    sulcus: tuple[float, float]  # costophrenic angle row, (right, left)
    dome: tuple[float, float]  # dome height above the sulcus, (right, left)
    rotation: float
    shift: tuple[float, float]
    rib_top: float
    rib_step: float
    heart_u: float  # where the normal heart sits in its CTR range, 0..1
    heart_tilt: float
    heart_aspect: float
    heart_y: float


def _draw_anatomy(rng: np.random.Generator) -> _Anatomy:
    u = rng.uniform
    half = u(0.64, 0.76)
    sulcus = u(0.7, 0.78)
    dome_r = u(0.26, 0.33)
    return _Anatomy(
        half_width=half,
        medial=u(0.09, 0.12),
        apex=u(-0.74, -0.64),
        waist=u(0.15, 0.3),
        sulcus=(sulcus, sulcus + u(0.0, 0.04)),
        dome=(dome_r, dome_r - u(0.02, 0.06)),
        rotation=np.deg2rad(u(-4.0, 4.0)),
        shift=(u(-0.05, 0.05), u(-0.05, 0.05)),
        rib_top=u(-0.78, -0.7),
        rib_step=u(0.125, 0.145),
        heart_u=u(0.0, 1.0),
        heart_tilt=np.deg2rad(u(15.0, 30.0)),
        heart_aspect=u(0.78, 0.9),
        heart_y=sulcus - dome_r - u(0.04, 0.12),
    )


class _Frame:
    """Pixel grid in anatomical coordinates, plus the inverse map for drawing primitives."""

    def __init__(self, n: int, anatomy: _Anatomy) -> None:
        self.n = n
        c = ((np.arange(n) + 0.5) / n * 2 - 1) * _ZOOM
        ix, iy = np.meshgrid(c, c)
        self._cos, self._sin = np.cos(anatomy.rotation), np.sin(anatomy.rotation)
        self._shift = anatomy.shift
        self.x = self._cos * ix - self._sin * iy + anatomy.shift[0]
        self.y = self._sin * ix + self._cos * iy + anatomy.shift[1]

    def to_pixels(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Anatomical points to (column, row) pixel coordinates."""
        dx, dy = x - self._shift[0], y - self._shift[1]
        ix = self._cos * dx + self._sin * dy
        iy = -self._sin * dx + self._cos * dy
        return (ix / _ZOOM + 1) / 2 * self.n - 0.5, (iy / _ZOOM + 1) / 2 * self.n - 0.5


def _box(d: np.ndarray, half: float, edge: float) -> np.ndarray:
    """1 inside |d| < half, 0 outside, with a linear ramp `edge` wide."""
    return np.clip((half - np.abs(d)) / edge + 0.5, 0.0, 1.0)


def _segments(frame: _Frame, segs: np.ndarray, out: np.ndarray) -> None:
    """Max-composite tapered segments into `out`; rows of segs: x0, y0, x1, y1, width, value.

    All segments are evaluated at once, each in its own small pixel window, which keeps a few
    hundred vessel pieces cheap."""
    n = frame.n
    px0, py0 = frame.to_pixels(segs[:, 0], segs[:, 1])
    px1, py1 = frame.to_pixels(segs[:, 2], segs[:, 3])
    half = segs[:, 4] / _ZOOM * n / 4
    c0 = np.floor(np.minimum(px0, px1) - half - 1).astype(int)
    r0 = np.floor(np.minimum(py0, py1) - half - 1).astype(int)
    extent = max(np.abs(px1 - px0).max(), np.abs(py1 - py0).max()) + 2 * half.max() + 3
    offsets = np.arange(int(np.ceil(extent)))
    cols = c0[:, None, None] + offsets[None, None, :]
    rows = r0[:, None, None] + offsets[None, :, None]
    x0, y0 = px0[:, None, None], py0[:, None, None]
    ax, ay = (px1 - px0)[:, None, None], (py1 - py0)[:, None, None]
    t = np.clip(((cols - x0) * ax + (rows - y0) * ay) / np.maximum(ax * ax + ay * ay, 1e-9), 0, 1)
    dist = np.hypot(cols - x0 - t * ax, rows - y0 - t * ay)
    val = segs[:, 5, None, None] * _box(dist, half[:, None, None], 1.0)
    keep = (val > 0) & (cols >= 0) & (cols < n) & (rows >= 0) & (rows < n)
    flat = np.broadcast_to(rows * n + cols, val.shape)
    np.maximum.at(out.reshape(-1), flat[keep], val[keep])


def _smooth_noise(rng: np.random.Generator, n: int, cells: int) -> np.ndarray:
    """Bilinearly upsampled white noise: texture whose grain is n/cells pixels."""
    coarse = rng.standard_normal((cells + 1, cells + 1))
    p = np.linspace(0, cells, n)
    i = np.minimum(p.astype(int), cells - 1)
    t = p - i
    rows = coarse[i] * (1 - t)[:, None] + coarse[i + 1] * t[:, None]
    return rows[:, i] * (1 - t) + rows[:, i + 1] * t


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur with edge padding (numpy only)."""
    r = max(int(3 * sigma), 1)
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    out = img
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (r, r)
        p = np.pad(out, pad, mode="edge")
        n = img.shape[axis]
        out = sum(w * np.take(p, np.arange(j, j + n), axis=axis) for j, w in enumerate(k))
    return out


def _erode(mask: np.ndarray) -> np.ndarray:
    out = mask.copy()
    out[1:] &= mask[:-1]
    out[:-1] &= mask[1:]
    out[:, 1:] &= mask[:, :-1]
    out[:, :-1] &= mask[:, 1:]
    return out


class _Lungs:
    """Implicit lung shapes: a boxy superellipse per side, cut by its diaphragm dome."""

    def __init__(self, frame: _Frame, a: _Anatomy) -> None:
        self.frame, self.a = frame, a

    def u(self, side: int) -> np.ndarray:
        """Distance from the midline towards side 0 (right, image left) or 1 (left)."""
        return -self.frame.x if side == 0 else self.frame.x

    def dome(self, side: int, u: np.ndarray) -> np.ndarray:
        a = self.a
        centre = a.medial + 0.4 * (a.half_width - a.medial)
        width = a.half_width - centre
        return a.sulcus[side] - a.dome[side] * np.clip(1 - ((u - centre) / width) ** 2, 0, 1)

    def field(self, side: int, u: np.ndarray, y: np.ndarray) -> np.ndarray:
        """< 1 inside the lung's outline (before the dome cut)."""
        a = self.a
        uc, au = (a.medial + a.half_width) / 2, (a.half_width - a.medial) / 2
        av = np.where(y < a.waist, a.waist - a.apex, 3.0 * (a.sulcus[side] - a.waist))
        return (np.abs(u - uc) / au) ** 2.4 + (np.abs(y - a.waist) / av) ** 2.4

    def mask(self, side: int) -> np.ndarray:
        u, y = self.u(side), self.frame.y
        return (self.field(side, u, y) < 1) & (y < self.dome(side, u))

    def collapsed(self, side: int, fu: float, fv: float) -> np.ndarray:
        """The lung shrunk towards its medial base: what stays inflated in a pneumothorax."""
        a = self.a
        u, y = self.u(side), self.frame.y
        su = a.medial + (u - a.medial) / fu
        sy = a.sulcus[side] + (y - a.sulcus[side]) / fv
        return (self.field(side, su, sy) < 1) & (y < self.dome(side, u))


def _vessels(frame: _Frame, a: _Anatomy, rng: np.random.Generator) -> np.ndarray:
    """Branching vessel markings radiating from both hila, brightest centrally."""
    segs = []
    for sign in (-1.0, 1.0):
        hx, hy = sign * (a.medial + 0.07), rng.uniform(-0.1, 0.02)
        for angle in np.deg2rad(np.linspace(-75, 80, 9) + rng.uniform(-8, 8, 9)):
            x, y, w, v = hx, hy, 0.035, 1.0
            for _ in range(5):
                angle += rng.uniform(-0.35, 0.35)
                length = rng.uniform(0.08, 0.13)
                nx, ny = x + sign * np.cos(angle) * length, y + np.sin(angle) * length
                segs.append((x, y, nx, ny, w, v))
                if rng.random() < 0.6:
                    ba = angle + rng.choice((-1, 1)) * rng.uniform(0.4, 0.8)
                    bl = 0.6 * length
                    bx, by = nx + sign * np.cos(ba) * bl, ny + np.sin(ba) * bl
                    segs.append((nx, ny, bx, by, 0.7 * w, 0.8 * v))
                x, y, w, v = nx, ny, max(0.75 * w, 0.012), 0.86 * v
    out = np.zeros((frame.n, frame.n))
    _segments(frame, np.asarray(segs), out)
    return out


def _ribs(frame: _Frame, a: _Anatomy) -> np.ndarray:
    """Posterior ribs as arcs from the spine out and down the chest wall, anterior ones fainter."""
    u, y = np.abs(frame.x), frame.y
    phase = (y + 0.3 * u - 0.85 * u**2 - a.rib_top) / a.rib_step
    k = np.floor(phase)
    posterior = _box(phase - k - 0.5, 0.2, 0.15) * ((k >= 0) & (k < 9))
    front = (y + 0.45 * u - a.rib_top - 0.25) / (1.25 * a.rib_step)
    kf = np.floor(front)
    anterior = _box(front - kf - 0.5, 0.16, 0.12) * ((kf >= 0) & (kf < 6)) * (u > 0.2)
    span = _box(u - (a.half_width + 0.11) / 2, (a.half_width + 0.01) / 2, 0.03)
    return np.clip(posterior + 0.35 * anterior, 0, 1) * span


def _body(frame: _Frame, a: _Anatomy) -> np.ndarray:
    """Soft-tissue outline: neck, shoulders, then the chest wall a little outside the lungs."""
    x, y = frame.x, frame.y
    shoulders = np.clip((y + 1.0) / 0.32, 0, 1)
    shoulders = shoulders * shoulders * (3 - 2 * shoulders)
    waist = np.clip((y + 0.65) / 0.35, 0, 1)
    half = 0.26 + (a.half_width - 0.06) * shoulders - 0.08 * waist
    return np.clip((half - np.abs(x)) / 0.03, 0, 1)


def _heart(frame: _Frame, a: _Anatomy, ctr: float) -> np.ndarray:
    """A tilted ellipse whose horizontal extent is `ctr` of the thoracic width, set left."""
    half = ctr * a.half_width  # half of ctr * (2 * half_width)
    tilt, aspect = a.heart_tilt, a.heart_aspect
    major = half / np.sqrt(np.cos(tilt) ** 2 + (aspect * np.sin(tilt)) ** 2)
    dx, dy = frame.x - 0.34 * half, frame.y - a.heart_y
    along = dx * np.cos(tilt) + dy * np.sin(tilt)
    across = -dx * np.sin(tilt) + dy * np.cos(tilt)
    inside = (along / major) ** 2 + (across / (aspect * major)) ** 2 < 1
    return inside & (frame.y < a.sulcus[1] - 0.5 * a.dome[1])


def _mediastinum(frame: _Frame, a: _Anatomy) -> np.ndarray:
    x, y = frame.x, frame.y
    half = a.medial + 0.01 + 0.03 * np.clip((y + 0.3) / 0.6, 0, 1)
    knob = np.hypot(x - 0.14, y + 0.36) < 0.075
    return ((np.abs(x) < half) | knob) & (y < max(a.sulcus))


def _dome_line(lungs: _Lungs) -> np.ndarray:
    x = lungs.frame.x
    return np.where(x < 0, lungs.dome(0, -x), lungs.dome(1, x))


def _clavicles(frame: _Frame, a: _Anatomy) -> np.ndarray:
    out = np.zeros((frame.n, frame.n))
    rows = []
    for s in (-1.0, 1.0):
        rows.append((s * 0.06, a.rib_top + 0.03, s * 0.3, a.rib_top - 0.01, 0.075, 1.0))
        rows.append((s * 0.3, a.rib_top - 0.01, s * 0.62, a.rib_top - 0.08, 0.065, 1.0))
    _segments(frame, np.asarray(rows), out)
    return out


def cardiothoracic_ratio(masks: Masks) -> float:
    """Widest heart extent over the widest thoracic extent (lateral lung edges), in pixels."""
    heart_cols = np.flatnonzero(masks.heart.any(axis=0))
    lung_cols = np.flatnonzero((masks.right_lung | masks.left_lung).any(axis=0))
    heart = heart_cols[-1] - heart_cols[0] + 1
    thorax = lung_cols[-1] - lung_cols[0] + 1
    return float(heart / thorax)


def _consolidation(lungs: _Lungs, s: int, rng: np.random.Generator) -> np.ndarray:
    """Patchy lobar opacity: a cluster of soft blobs broken up by texture, in one zone."""
    a, y = lungs.a, lungs.frame.y
    u = lungs.u(s)
    cy = a.apex + rng.uniform(0.2, 0.8) * (a.sulcus[s] - 0.6 * a.dome[s] - a.apex)
    cu = a.medial + rng.uniform(0.35, 0.65) * (a.half_width - a.medial)
    blobs = np.zeros_like(y)
    for _ in range(rng.integers(6, 11)):
        du, dy = rng.uniform(-0.16, 0.16, 2)
        sigma = rng.uniform(0.04, 0.08)
        blobs += np.exp(-((u - cu - du) ** 2 + (y - cy - dy) ** 2) / (2 * sigma**2))
    patches = _smooth_noise(rng, lungs.frame.n, 20)
    return np.clip(1.2 * blobs - 0.3 + 0.35 * patches, 0, 1)


def _fluid(lungs: _Lungs, s: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Basal fluid whose upper border (meniscus) climbs towards the lateral chest wall.

    Returns the fluid fraction per pixel and the fluid's density (denser where deeper)."""
    a, y = lungs.a, lungs.frame.y
    t = np.clip((lungs.u(s) - a.medial) / (a.half_width - a.medial), 0, 1)
    level = a.sulcus[s] - a.dome[s] - rng.uniform(0.02, 0.25)
    meniscus = level - rng.uniform(0.12, 0.25) * t**2
    depth = y - meniscus
    return np.clip(depth / 0.05 + 0.5, 0, 1), 0.5 + 0.12 * np.clip(depth / 0.3, 0, 1)


def _pneumothorax(lungs: _Lungs, s: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Air between the chest wall and a lung shrunk towards its medial base, and the thin
    visceral pleural line along the shrunken lung's edge."""
    inflated = lungs.collapsed(s, rng.uniform(0.55, 0.78), rng.uniform(0.72, 0.9))
    space = lungs.mask(s) & ~inflated
    near_space = ~_erode(_erode(~space))
    return space, inflated & near_space


def _lung_density(
    finding: str,
    side: str | None,
    lungs: _Lungs,
    vessels: np.ndarray,
    texture: tuple[np.ndarray, np.ndarray],
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Density of the lung fields with the finding's sign painted in, and the lesion (0..1)."""
    density = 0.14 + 0.16 * vessels + 0.03 * texture[0] + 0.045 * texture[1]
    lesion = np.zeros_like(density)
    if side is None:
        return density, lesion
    s = SIDES.index(side)
    outline = lungs.mask(s)
    if finding == "pneumonia":
        lesion = _consolidation(lungs, s, rng) * outline
        density = density - 0.1 * vessels * lesion + 0.26 * lesion
    elif finding == "effusion":
        fluid, fluid_density = _fluid(lungs, s, rng)
        lesion = fluid * outline
        density = density * (1 - lesion) + fluid_density * lesion
    else:
        space, line = _pneumothorax(lungs, s, rng)
        lesion = space.astype(float)
        density = np.where(space, 0.05 + 0.01 * texture[0], density + 0.03) + 0.22 * line
    return density, lesion


def _check_request(finding: str, size: int) -> None:
    if finding not in FINDINGS:
        raise CaseStudyDataError(f"unknown finding {finding!r}; expected one of {FINDINGS}")
    if size < 32 or size % 2:
        raise CaseStudyDataError(f"image size {size} must be an even number of pixels >= 32")


def render(finding: str, seed: int, size: int = 64) -> XRay:
    """The radiograph for (finding, seed, size); `XRay.seed` fed back here reproduces it."""
    _check_request(finding, size)
    children = np.random.SeedSequence(seed).spawn(4)
    anat_rng, mark_rng, find_rng, expo_rng = (np.random.default_rng(c) for c in children)
    a = _draw_anatomy(anat_rng)
    frame = _Frame(size * _SS, a)
    lo, hi = CTR_RANGES[finding == "cardiomegaly"]
    heart = _heart(frame, a, lo + a.heart_u * (hi - lo))
    mediastinum = _mediastinum(frame, a)
    lungs = _Lungs(frame, a)
    visible = [lungs.mask(s) & ~heart & ~mediastinum for s in (0, 1)]
    vessels = _vessels(frame, a, mark_rng)
    # coarse mottling and a fine reticular grain: the markings a pneumothorax lacks
    texture = (
        _smooth_noise(mark_rng, frame.n, size // 5),
        _smooth_noise(mark_rng, frame.n, size // 2),
    )
    side = SIDES[find_rng.integers(2)] if finding in LATERAL_FINDINGS else None
    lung, lesion = _lung_density(finding, side, lungs, vessels, texture, find_rng)

    x, y = frame.x, frame.y
    body = _body(frame, a)
    below = np.clip((y - _dome_line(lungs)) / 0.3, 0, 1)
    density = 0.03 + np.where(below > 0, 0.55 + 0.08 * below, 0.4) * body
    bubble = ((x - 0.42) / 0.11) ** 2 + ((y - a.sulcus[1] + a.dome[1] - 0.13) / 0.06) ** 2 < 1
    density = np.where(bubble, 0.22, density)
    density = np.where(visible[0] | visible[1], lung, density)
    trachea = _box(x, 0.035, 0.02) * (y < -0.15)
    density = np.where(mediastinum, 0.56 - 0.1 * trachea, density)
    density = np.where(heart, 0.6, density)
    vertebrae = 0.7 + 0.3 * _box((y - a.rib_top) / a.rib_step % 1 - 0.5, 0.38, 0.15)
    density += 0.06 * _box(x, 0.055, 0.02) * vertebrae * body
    in_lung = visible[0] | visible[1]
    see_through = np.where(in_lung, np.clip(0.09 - 0.25 * (lung - 0.2), 0.04, 0.09), 0.05)
    bones = _ribs(frame, a) * (1 - np.clip(below / 0.3, 0, 1))
    clavicles = _clavicles(frame, a)
    density += (bones * see_through + 0.15 * clavicles) * body

    small = _blur(density, 0.8).reshape(size, _SS, size, _SS).mean(axis=(1, 3))
    image = _expose(small, expo_rng)
    masks = Masks(
        heart=_down(heart, size),
        right_lung=_down(visible[0], size),
        left_lung=_down(visible[1], size),
        lesion=_down((lesion >= 0.5) & (visible[0] | visible[1]), size),
        vessels=vessels.reshape(size, _SS, size, _SS).mean(axis=(1, 3)) > 0.15,
    )
    return XRay(image, finding, side, cardiothoracic_ratio(masks), seed, masks)


def _down(mask: np.ndarray, size: int) -> np.ndarray:
    return mask.reshape(size, _SS, size, _SS).mean(axis=(1, 3)) >= 0.5


def _expose(density: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Film response: contrast and brightness about mid-grey, gamma, then quantum noise."""
    contrast, brightness = rng.uniform(0.85, 1.2), rng.uniform(-0.06, 0.06)
    gamma, noise = rng.uniform(0.8, 1.25), rng.uniform(0.01, 0.035)
    image = np.clip(0.5 + contrast * (density / 0.8 - 0.5) + brightness, 0, 1) ** gamma
    image = image + rng.normal(0.0, noise, image.shape)
    return np.clip(image, 0, 1).astype(np.float32)


def generate(finding: str, rng: np.random.Generator, size: int = 64) -> XRay:
    """One radiograph of `finding`, its seed drawn from `rng`."""
    return render(finding, int(rng.integers(2**63)), size)


def generate_set(
    n: int,
    seed: int,
    size: int = 64,
    findings: tuple[str, ...] | None = None,
    class_weights: tuple[float, ...] | None = None,
) -> list[XRay]:
    """`n` radiographs whose findings are drawn with `class_weights` (uniform by default)."""
    findings = FINDINGS if findings is None else tuple(findings)
    for f in findings:
        _check_request(f, size)
    weights = np.ones(len(findings)) if class_weights is None else np.asarray(class_weights, float)
    if weights.shape != (len(findings),) or (weights < 0).any() or weights.sum() <= 0:
        raise CaseStudyDataError(
            f"class_weights {class_weights} must be {len(findings)} non-negative numbers, not all 0"
        )
    rng = np.random.default_rng(seed)
    labels = rng.choice(len(findings), size=n, p=weights / weights.sum())
    return [generate(findings[k], rng, size) for k in labels]


def save_png(xray: XRay, path: str | Path) -> None:
    """Write the image as an 8-bit grayscale PNG."""
    from PIL import Image

    Image.fromarray(np.round(xray.image * 255).astype(np.uint8), mode="L").save(path)


def preprocess(image: np.ndarray, size: int) -> np.ndarray:
    """Any photo of a radiograph to the generator's format: grayscale, centre-cropped square,
    resized to `size`, float32 in [0, 1]."""
    from PIL import Image

    pixels = np.asarray(image)
    if pixels.ndim == 3:
        pixels = pixels[..., :3].mean(axis=2)
    if pixels.dtype != np.uint8:
        pixels = np.clip(pixels * (255 if pixels.max() <= 1 else 1), 0, 255)
    h, w = pixels.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = Image.fromarray(pixels[top : top + side, left : left + side].astype(np.uint8))
    resized = square.resize((size, size), Image.Resampling.BOX)
    return (np.asarray(resized, dtype=np.float32) / 255.0).clip(0, 1)


def load_real_xrays(size: int = 64) -> list[np.ndarray]:
    """The real chest X-rays shipped in `pneumonia-model-package`, through `preprocess`.

    A smoke test only: the package states no licence, so its images are never committed."""
    from PIL import Image

    spec = importlib.util.find_spec(_REAL_PACKAGE)  # finds without importing (it needs keras)
    if spec is None or not spec.submodule_search_locations:
        raise CaseStudyDataError(
            "real X-rays need the optional pneumonia-model-package wheel, which is not installed"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in {".jpeg", ".jpg", ".png"})
    return [preprocess(np.asarray(Image.open(p).convert("L")), size) for p in files]
