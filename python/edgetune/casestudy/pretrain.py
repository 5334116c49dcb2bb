"""The case study's pre-training data: generic captions of procedural radiographs, which the
owner's `pretrain_base` (edgetune.learning.vision.train) aligns the VLM's tower on."""

import numpy as np

from edgetune.casestudy.xray import XRay, generate_set

_ZONES = ("upper", "middle", "lower")


def xray_caption_pairs(n: int, seed: int, size: int = 64) -> list[tuple[np.ndarray, str]]:
    """Generic captions of procedural radiographs, read off the generator's masks: heart width,
    and the largest region that differs from aerated lung (brighter or darker, small or large,
    which side, which zone) or "clear lungs".

    Only what is visible is named, never a diagnosis: this is still the owner's generic stage,
    but on the imaging domain, so the tower learns to report the signs the task turns on.
    """
    return [(x.image, _describe(x)) for x in generate_set(n, seed, size)]


def _describe(xray: XRay) -> str:
    """One caption from `xray.masks` and its pixels (see `xray_caption_pairs`)."""
    masks = xray.masks
    heart = "wide" if xray.ctr > 0.5 else "narrow"
    lesion = masks.lesion
    if lesion.sum() < 8:
        return f"{heart} heart, clear lungs."
    lungs = masks.right_lung | masks.left_lung
    rows = np.flatnonzero(lungs.any(axis=1))
    depth = (np.nonzero(lesion)[0].mean() - rows[0]) / max(rows[-1] - rows[0], 1)
    zone = _ZONES[min(int(depth * 3), 2)]
    side = "right" if np.nonzero(lesion)[1].mean() < lesion.shape[1] / 2 else "left"
    contrast = xray.image[lesion].mean() - xray.image[lungs & ~lesion].mean()
    shade = "bright" if contrast > 0 else "dark"
    extent = "large" if lesion.sum() > 0.15 * lungs.sum() else "small"
    return f"{heart} heart, {extent} {shade} area in the {side} {zone} zone."
