"""Times the case-study data generator and sweeps many seeds for the measured signs.

Run: .venv/bin/python bench/bench_xray.py [n_seeds]
Prints ms per image at 64 and 128 px, the CTR range per class, and how many seeds break each
sign the tests check on a handful of seeds (all should be 0).
"""

import sys
import time

import numpy as np

from edgetune.casestudy.hospitals import make_hospitals
from edgetune.casestudy.xray import FINDINGS, render


def _time_per_image(size: int, n: int) -> float:
    start = time.perf_counter()
    for seed in range(n):
        for finding in FINDINGS:
            render(finding, seed, size)
    return (time.perf_counter() - start) / (n * len(FINDINGS)) * 1000


def _sweep(n: int) -> dict[str, int]:
    broken = {"ctr": 0, "opacity": 0, "pneumothorax": 0, "meniscus": 0, "empty lesion": 0}
    ctrs: dict[str, list[float]] = {f: [] for f in FINDINGS}
    for seed in range(n):
        normal = render("normal", seed, 64)
        for finding in FINDINGS:
            x = normal if finding == "normal" else render(finding, seed, 64)
            ctrs[finding].append(x.ctr)
            broken["ctr"] += (x.ctr > 0.5) != (finding == "cardiomegaly")
            lesion = x.masks.lesion
            if x.side is None:
                continue
            if lesion.sum() < 10:
                broken["empty lesion"] += 1
                continue
            change = x.image[lesion].mean() - normal.image[lesion].mean()
            if finding == "pneumothorax":
                broken["pneumothorax"] += int(change > -0.05)
            else:
                broken["opacity"] += int(change < 0.1)
            if finding == "effusion":
                rows, cols = np.nonzero(lesion)
                third = np.ptp(cols) / 3
                low = cols <= cols.min() + third
                high = cols >= cols.max() - third
                lateral, medial = (low, high) if x.side == "right" else (high, low)
                broken["meniscus"] += int(rows[lateral].min() >= rows[medial].min())
    for finding, values in ctrs.items():
        print(f"  CTR {finding:13s} {min(values):.3f} .. {max(values):.3f}")
    return broken


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    for size in (64, 128):
        print(f"render {size}px: {_time_per_image(size, 20):.1f} ms/image")
    start = time.perf_counter()
    make_hospitals(4, [100, 100, 100, 100], alpha=0.5, seed=0, noisy_hospital=3, noise_rate=0.3)
    print(f"4 hospitals x 100 samples at 64px: {time.perf_counter() - start:.1f} s")
    print(f"sweep over {n} seeds:")
    print(f"  seeds breaking a sign: {_sweep(n)}")


if __name__ == "__main__":
    main()
