"""leace_reference.py — independent float64 numpy reference for LEACE.

Reproduces the semantics of concept-erasure 0.2.4 ``LeaceFitter`` (leace.py,
shrinkage.py) without torch, so the culeace C library can be checked against
a second, readable implementation:

  * moments by two passes: mean_x, Xc = X - mean_x, Zc = Z - mean_z,
    Sigma_xz = Xc^T Zc / (n - 1);
    Sigma_xx = sym(Xc^T Xc) / (n - 1), or with shrinkage
    optimal_linear_shrinkage(sym(Xc^T Xc) / n, n) including its eps terms;
  * method "leace": eigh(Sigma_xx), eigenvalues kept where
    lambda > lambda_max * d * eps (float64 eps), W = Sigma^{-1/2},
    W_inv = Sigma^{1/2} on the kept subspace; method "orth": W = W_inv = I;
  * u = left singular vectors of W Sigma_xz, columns with s <= svd_tol zeroed;
    L = W_inv u (d, r), R = u^T W (r, d), P = I - L R;
  * constrain_cov_trace (leace only): when tr(P S P^T) > tr(S), P is mixed
    with Q = I - u u^T so that the trace is equal, and the factors are
    recomputed from the full SVD of I - P exactly as concept-erasure 0.2.4
    does: L = U diag(sqrt s), R = Vh * sqrt(s) (the last one broadcasts over
    COLUMNS, as in the upstream code, so I - L R is NOT alpha P + (1-alpha) Q
    in general; ``mixture_formula_P`` gives that textbook matrix too);
  * bias = mean_x when affine, else zeros.

z is an (n, k) float matrix; ``z_from_classes`` builds it from class indices
the way culeace does: one indicator column (class == 1) for k = 2, one-hot k
columns for k >= 3.
"""

from dataclasses import dataclass, field

import numpy as np

EPS = np.finfo(np.float64).eps


@dataclass
class ReferenceEraser:
    """Result of a reference fit; P = I - L @ R."""

    L: np.ndarray  # (d, r)
    R: np.ndarray  # (r, d)
    bias: np.ndarray  # (d,) zeros when not affine
    P: np.ndarray  # (d, d)
    mixture: bool = False  # constrain_cov_trace's mixture branch was taken
    alpha: float = float("nan")  # mixture weight of the LEACE P (when taken)
    info: dict = field(default_factory=dict)


def z_from_classes(classes, k):
    """Class indices (n,) -> culeace's z matrix: (n, 1) for k = 2 else (n, k)."""
    classes = np.asarray(classes)
    if k == 2:
        return (classes == 1).astype(np.float64)[:, None]
    z = np.zeros((classes.shape[0], k), dtype=np.float64)
    z[np.arange(classes.shape[0]), classes] = 1.0
    return z


def optimal_linear_shrinkage(S_n, n):
    """Bodnar-Gupta-Parolya shrinkage toward tr(S)/p I, as concept-erasure."""
    p = S_n.shape[-1]
    trace_S = np.trace(S_n)
    sigma0 = np.eye(p) * trace_S / p
    sigma0_norm_sq = np.sum(sigma0 * sigma0)
    S_norm_sq = np.sum(S_n * S_n)
    prod_trace = np.trace(S_n @ sigma0)
    top = trace_S * trace_S * sigma0_norm_sq / n
    bottom = S_norm_sq * sigma0_norm_sq - prod_trace * prod_trace
    alpha = 1 - (top + EPS) / (bottom + EPS)
    beta = (1 - alpha) * (prod_trace + EPS) / (sigma0_norm_sq + EPS)
    return alpha * S_n + beta * sigma0


def moments(x, z):
    """Two-pass moments: mean_x (d), co-moment Xc^T Xc (d, d), Sigma_xz."""
    n = x.shape[0]
    mean_x = x.mean(axis=0)
    xc = x - mean_x
    zc = z - z.mean(axis=0)
    sxx = xc.T @ xc
    sxx = (sxx + sxx.T) / 2
    sigma_xz = xc.T @ zc / (n - 1)
    return mean_x, sxx, sigma_xz


def streamed_moments(x, z, block_sizes):
    """Same moments merged block by block (Chan et al.), as a streaming
    implementation computes them; used to check that a case is not sensitive
    to the order of summation."""
    n_a, mean_a, zmean_a = 0, None, None
    sxx_a = sxz_a = None
    start = 0
    for size in block_sizes:
        xb, zb = x[start:start + size], z[start:start + size]
        start += size
        n_b, mx, mz = xb.shape[0], xb.mean(axis=0), zb.mean(axis=0)
        xc, zc = xb - mx, zb - mz
        sxx_b, sxz_b = xc.T @ xc, xc.T @ zc
        if n_a == 0:
            n_a, mean_a, zmean_a, sxx_a, sxz_a = n_b, mx, mz, sxx_b, sxz_b
            continue
        n = n_a + n_b
        dx, dz = mx - mean_a, mz - zmean_a
        f = n_a * n_b / n
        sxx_a = sxx_a + sxx_b + f * np.outer(dx, dx)
        sxz_a = sxz_a + sxz_b + f * np.outer(dx, dz)
        mean_a = mean_a + dx * (n_b / n)
        zmean_a = zmean_a + dz * (n_b / n)
        n_a = n
    assert start == x.shape[0]
    return mean_a, (sxx_a + sxx_a.T) / 2, sxz_a / (n_a - 1)


def sigma_xx(sxx, n, shrinkage):
    """Covariance estimate from the co-moment: shrunk (of S/n) or S/(n-1)."""
    if shrinkage:
        return optimal_linear_shrinkage(sxx / n, n)
    return sxx / (n - 1)


def whitening(sigma):
    """W = Sigma^{-1/2}, W_inv = Sigma^{1/2} on eigenvalues above the cut."""
    lam, V = np.linalg.eigh(sigma)
    mask = lam > lam[-1] * sigma.shape[-1] * EPS
    lam = np.clip(lam, 0.0, None)
    with np.errstate(divide="ignore"):
        inv_sqrt = np.where(mask, 1.0 / np.sqrt(lam), 0.0)
    W = (V * inv_sqrt) @ V.T
    W_inv = (V * np.where(mask, np.sqrt(lam), 0.0)) @ V.T
    return W, W_inv, int(mask.sum())


def mixture_alpha(P, Q, sigma, old_trace):
    """Weight alpha of P in alpha P + (1-alpha) Q giving trace = old_trace."""
    x = np.trace(P @ sigma @ P.T)
    y = 2 * np.trace(P @ sigma @ Q.T)
    zz = np.trace(Q @ sigma @ Q.T)
    w = old_trace
    discr = np.sqrt(4 * w * x - 4 * w * y + 4 * w * zz - 4 * x * zz + y**2)
    a1 = (-y / 2 + zz - discr / 2) / (x - y + zz)
    a2 = (-y / 2 + zz + discr / 2) / (x - y + zz)
    alpha = a1 if a1 > 0 else a2
    return float(np.clip(alpha, 0.0, 1.0))


def fit(x, z, method="leace", affine=True, shrinkage=True,
        constrain_cov_trace=True, svd_tol=0.01, block_sizes=None):
    """Fits the reference eraser on x (n, d) and z (n, k); float64 throughout.
    block_sizes: None for two-pass moments, else a streamed (Chan) merge."""
    x = np.asarray(x, dtype=np.float64)
    z = np.asarray(z, dtype=np.float64).reshape(x.shape[0], -1)
    n, d = x.shape
    if method not in ("leace", "orth"):
        raise ValueError(f"unknown method {method!r}")
    assert svd_tol > 0.0
    eye = np.eye(d)
    if block_sizes is None:
        mean_x, sxx, sxz = moments(x, z)
    else:
        mean_x, sxx, sxz = streamed_moments(x, z, block_sizes)
    info = {}
    if method == "leace":
        sigma = sigma_xx(sxx, n, shrinkage)
        W, W_inv, info["eig_kept"] = whitening(sigma)
    else:
        sigma, W, W_inv = None, eye, eye
    u, s, _ = np.linalg.svd(W @ sxz, full_matrices=False)
    u = u * (s > svd_tol)
    info["singular_values"] = s
    info["rank"] = int((s > svd_tol).sum())
    L, R = W_inv @ u, u.T @ W
    P = eye - L @ R
    mixture, alpha = False, float("nan")
    if constrain_cov_trace and method == "leace":
        old_trace = np.trace(sigma)
        new_trace = np.trace(P @ sigma @ P.T)
        info["trace_old"], info["trace_new"] = old_trace, new_trace
        if new_trace > old_trace:
            mixture = True
            Q = eye - u @ u.T
            alpha = mixture_alpha(P, Q, sigma, old_trace)
            P_mix = alpha * P + (1 - alpha) * Q
            uu, ss, vh = np.linalg.svd(eye - P_mix)
            L = uu * np.sqrt(ss)
            R = vh * np.sqrt(ss)  # column broadcast, as upstream
            P = eye - L @ R
            info["mixture_formula_P"] = P_mix
    bias = mean_x.copy() if affine else np.zeros(d)
    return ReferenceEraser(L, R, bias, P, mixture, alpha, info)


def apply(eraser, x):
    """x' = x - ((x - bias) R^T) L^T for rows x (n, d)."""
    return x - ((x - eraser.bias) @ eraser.R.T) @ eraser.L.T
