"""Refit the coefficients of minigrad's float32 exact-GELU form (minigrad/ops/cpu_kernels.py, _PHI_P and _PHI_C).

python tools/fit_gelu_phi.py [--degree 6] [--p 0.55]

The form (Abramowitz & Stegun 7.1.26 with a free degree):
    erfc(a) ~= exp(-a^2) * t * (c1 + c2 t + ... + cn t^(n-1)),   t = 1 / (1 + p a),   a >= 0,
so Phi(-|x|) = erfc(|x| / sqrt 2) / 2 reuses exp(-x^2 / 2), which the GELU derivative needs anyway.
The c's minimise the maximum absolute error over a in [0, 10] (erfc(10) ~ 2e-45: zero in float32): a weighted
least-squares fit whose weights are multiplied by the current error each round (Lawson's algorithm).
Prints p, the c's and the max abs error against math.erfc.
"""
from __future__ import annotations

import argparse
import math

import numpy as np


def fit(degree: int, p: float, rounds: int = 300) -> tuple[np.ndarray, float]:
    a = np.linspace(0.0, 10.0, 60_000)
    target = np.array([math.erfc(v) for v in a])
    t = 1.0 / (1.0 + p * a)
    basis = np.vander(t, degree, increasing=True) * (t * np.exp(-a * a))[:, None]
    w = np.ones_like(a)
    for _ in range(rounds):
        sw = np.sqrt(w)[:, None]
        c = np.linalg.lstsq(basis * sw, target * sw[:, 0], rcond=None)[0]
        err = np.abs(basis @ c - target)
        w *= err
        w /= w.sum()
    return c, float(np.abs(basis @ c - target).max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--degree", type=int, default=6, help="number of coefficients c1..cn")
    ap.add_argument("--p", type=float, default=0.55, help="t = 1 / (1 + p a)")
    args = ap.parse_args()
    c, err = fit(args.degree, args.p)
    print(f"p = {args.p}")
    print("c =", ", ".join(repr(float(v)) for v in c))
    print(f"max |erfc error| on [0, 10]: {err:.3e}  (Phi = erfc / 2: {err / 2:.3e})")


if __name__ == "__main__":
    main()
