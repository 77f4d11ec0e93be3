"""gen_reference_fixtures.py — writes tests/fixtures/reference_erasers.h5.

Golden LEACE erasers for tests/c/test_reference.c. Every case is random data
with a planted concept (fixed seeds, deterministic), fitted twice in float64:
by the numpy reference (tests/py/leace_reference.py) and by concept-erasure's
LeaceFitter (torch, dtype=torch.float64, fed in several blocks). The script
asserts the two agree (max |dP| / max |P| <= 1e-9, same for the bias) and that
every case is numerically well posed (no singular value of W Sigma_xz within
25% of svd_tol; no eigenvalue of Sigma_xx within a factor 10 of the
eigenvalue cut lambda_max * d * eps; P moves by <= 1e-9 when the moments are
merged from random row blocks) before writing anything.

Run:  python tests/py/gen_reference_fixtures.py [-o PATH]

File layout (all arrays row-major, C order):

  /                         attrs: format = "culeace-reference-erasers",
                            version = 1, generator, concept_erasure_version,
                            torch_version, numpy_version, agreement_tol,
                            max_rel_diff_P (largest numpy-vs-torch difference)
  /cases/<name>/            one group per case (names sort in creation order)
      attrs  method               int   0 = leace, 1 = orth (culeace_method)
             affine               int   0/1
             shrinkage            int   0/1
             constrain_cov_trace  int   0/1
             svd_tol              double
             z_kind               int   0 = classes, 1 = continuous
                                        (culeace_z_kind)
             k                    int64 classes (z_kind 0) or z columns (1)
             z_dim                int64 width of the z matrix used (1 for
                                        binary classes, k otherwise)
             n, d                 int64
             rank                 int64 rank of the edit (singular values
                                        of W Sigma_xz above svd_tol)
             mixture              int   1 when constrain_cov_trace's mixture
                                        branch was taken
             seed                 int64
             description          string
      x         (n, d)  float64   activations
      z         (n,)    int32     class indices 0..k-1   (z_kind 0)
                (n, k)  float64   continuous concept     (z_kind 1)
      P_ref     (d, d)  float64   I - L R from the numpy reference
      bias_ref  (d,)    float64   mean_x when affine, else zeros
      P_ce      (d, d)  float64   I - L R from concept-erasure (torch f64)
      bias_ce   (d,)    float64   concept-erasure's bias (zeros when None)

About the mixture branch of constrain_cov_trace: with concept-erasure 0.2.4
semantics it never triggers in exact arithmetic. The same Sigma is used for
whitening and for the trace test, W Sigma = W_inv and u lies in range(W), so
tr(P Sigma P^T) = tr(Sigma) - ||W_inv u||_F^2 <= tr(Sigma). Only round-off
can take it, and then the result is ill-conditioned, so no case here can
pin it down; every case records mixture = 0 and the script checks that.
"""

import argparse
from importlib import metadata
import os
import sys
import warnings

import h5py
import numpy as np

warnings.filterwarnings("ignore", category=FutureWarning)
import torch  # noqa: E402
from concept_erasure import LeaceFitter  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import leace_reference as ref  # noqa: E402

AGREEMENT_TOL = 1e-9
SVD_MARGIN = 0.25  # singular values must be outside svd_tol * (1 -+ margin)
EIG_MARGIN = 10.0  # eigenvalues must be outside cut / 10 .. cut * 10
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_OUT = os.path.join(REPO, "tests", "fixtures", "reference_erasers.h5")


# ---- data with planted concepts --------------------------------------------

def base_x(rng, n, d, log_spread=2.0):
    """Gaussian rows with a random rotated anisotropic covariance and mean."""
    scales = np.exp(rng.uniform(-log_spread, log_spread, d))
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    mean = rng.normal(0.0, 3.0, d)
    return (rng.standard_normal((n, d)) * scales) @ q.T + mean


def plant_classes(rng, x, classes, k, rank, strength):
    """Adds class-dependent means living in a random rank-`rank` subspace."""
    d = x.shape[1]
    basis, _ = np.linalg.qr(rng.standard_normal((d, rank)))
    means = rng.standard_normal((k, rank)) @ basis.T * strength
    return x + means[classes]


def low_rank_x(rng, n, d, r):
    """Rows in an r-dim affine subspace of R^d (rank-deficient X)."""
    return rng.standard_normal((n, r)) @ rng.standard_normal((r, d)) + rng.normal(0, 2, d)


def make_case(spec):
    """Builds x (n, d) and z for one case spec; returns (x, z, z_matrix)."""
    rng = np.random.default_rng(spec["seed"])
    n, d, k = spec["n"], spec["d"], spec["k"]
    kind = spec.get("data", "gauss")
    if kind == "lowrank":
        x = low_rank_x(rng, n, d, spec["x_rank"])
    else:
        x = base_x(rng, n, d, spec.get("log_spread", 2.0))
    if spec["z_kind"] == "classes":
        probs = np.array(spec.get("class_probs", np.ones(k) / k))
        z = rng.choice(k, size=n, p=probs / probs.sum()).astype(np.int32)
        x = plant_classes(rng, x, z, k, spec.get("concept_rank", k - 1),
                          spec.get("strength", 1.0))
        zm = ref.z_from_classes(z, k)
    else:
        w = rng.standard_normal((d, k)) / np.sqrt(d)
        z = (x - x.mean(0)) @ w * spec.get("strength", 1.0) + rng.standard_normal((n, k))
        zm = z
    if kind == "dupcols":
        src = rng.choice(d - spec["n_dup"], size=spec["n_dup"], replace=False)
        x[:, d - spec["n_dup"]:] = x[:, src]
    return np.ascontiguousarray(x), z, zm


# ---- the cases ---------------------------------------------------------------

def B(name, seed, n, d, desc, **kw):
    """Case spec with concept-erasure's defaults unless overridden."""
    spec = dict(name=name, seed=seed, n=n, d=d, k=2, z_kind="classes",
                method="leace", affine=True, shrinkage=True,
                constrain_cov_trace=True, svd_tol=0.01, description=desc)
    spec.update(kw)
    return spec


CASES = [
    B("c00_bin_defaults", 100, 300, 32, "binary, concept-erasure defaults"),
    B("c01_bin_linear_noshrink_noctr", 101, 200, 16,
      "binary, affine off, shrinkage off, trace constraint off",
      affine=False, shrinkage=False, constrain_cov_trace=False),
    B("c02_bin_orth", 102, 250, 24, "binary, orthogonal projection",
      method="orth"),
    B("c03_bin_orth_linear", 103, 120, 8, "binary, orth, affine off",
      method="orth", affine=False, shrinkage=False),
    B("c04_bin_unbalanced_noshrink", 104, 400, 40,
      "binary, 85/15 classes, strongly anisotropic", shrinkage=False,
      class_probs=[0.85, 0.15], log_spread=3.5, strength=0.5),
    B("c05_cont_k1", 105, 400, 20, "continuous z, k = 1", z_kind="continuous",
      k=1),
    B("c06_cont_k1_noshrink_linear", 106, 150, 12,
      "continuous z, k = 1, affine and shrinkage off", z_kind="continuous",
      k=1, affine=False, shrinkage=False),
    B("c07_cont_k3_orth", 107, 300, 16, "continuous z, k = 3, orth",
      z_kind="continuous", k=3, method="orth"),
    B("c08_cls5_defaults", 108, 500, 48, "5 classes, defaults", k=5),
    B("c09_cls5_noshrink_noctr", 109, 300, 16,
      "5 classes, shrinkage and trace constraint off", k=5, shrinkage=False,
      constrain_cov_trace=False),
    B("c10_cls5_orth_linear", 110, 200, 24, "5 classes, orth, affine off",
      k=5, method="orth", affine=False),
    B("c11_cls5_rank2_svdtol", 111, 400, 32,
      "5 classes with means in a 2-dim subspace: svd_tol = 0.2 drops the "
      "noise singular values (edit rank 2)", k=5, concept_rank=2,
      svd_tol=0.2, strength=4.0),
    B("c12_d_gt_n_shrink", 112, 40, 64, "d > n, binary, shrinkage on"),
    B("c13_d_gt_n_noshrink", 113, 30, 48,
      "d > n, binary, shrinkage off: rank-deficient Sigma_xx, eigen cut",
      shrinkage=False),
    B("c14_dupcols_noshrink", 114, 200, 20,
      "4 duplicated columns, shrinkage off: eigen cut", shrinkage=False,
      data="dupcols", n_dup=4),
    B("c15_lowrank_cls5_noshrink", 115, 250, 32,
      "X of rank 6 (+ planted means), 5 classes, shrinkage off", k=5,
      shrinkage=False, data="lowrank", x_rank=6),
    B("c16_lowrank_shrink", 116, 150, 24,
      "X of rank 5, binary, shrinkage on", data="lowrank", x_rank=5),
    B("c17_tiny", 117, 20, 8, "n = 20, d = 8, binary", strength=2.0),
    B("c18_cls3_d64", 118, 480, 64, "3 classes, d = 64, affine off", k=3,
      affine=False),
]


# ---- fitting and checks --------------------------------------------------------

def fit_concept_erasure(x, zm, spec, n_blocks=3):
    """concept-erasure in torch float64, statistics streamed in n_blocks."""
    f = LeaceFitter(x.shape[1], zm.shape[1], spec["method"],
                    affine=spec["affine"],
                    constrain_cov_trace=spec["constrain_cov_trace"],
                    dtype=torch.float64, shrinkage=spec["shrinkage"],
                    svd_tol=spec["svd_tol"])
    edges = np.linspace(0, x.shape[0], n_blocks + 1).astype(int)
    for a, b in zip(edges[:-1], edges[1:]):
        f.update(torch.from_numpy(x[a:b]), torch.from_numpy(zm[a:b]))
    e = f.eraser
    bias = e.bias.numpy() if e.bias is not None else np.zeros(x.shape[1])
    mixture = e.proj_left.shape[1] == x.shape[1] and zm.shape[1] < x.shape[1]
    return e.P.numpy().copy(), bias.copy(), mixture


def rel(a, b):
    """max |a - b| / max |b|."""
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def random_blocks(rng, n):
    """Random block sizes summing to n (1 .. n/3 rows each)."""
    sizes = []
    while n > 0:
        sizes.append(min(n, int(rng.integers(1, max(2, n // 3)))))
        n -= sizes[-1]
    return sizes


def check_streaming_stable(x, zm, spec, r, tries=5):
    """Asserts P barely moves when the moments are merged in random blocks."""
    rng = np.random.default_rng(spec["seed"] + 1)
    for _ in range(tries):
        rs = ref.fit(x, zm, method=spec["method"], affine=spec["affine"],
                     shrinkage=spec["shrinkage"],
                     constrain_cov_trace=spec["constrain_cov_trace"],
                     svd_tol=spec["svd_tol"],
                     block_sizes=random_blocks(rng, x.shape[0]))
        d = rel(rs.P, r.P)
        assert d <= AGREEMENT_TOL, f"{spec['name']}: block-merged P moves by {d:.3e}"


def check_well_posed(x, zm, spec, r):
    """Asserts no singular value sits near svd_tol and no eigenvalue near the cut."""
    s = r.info["singular_values"]
    tol = spec["svd_tol"]
    near = np.abs(s - tol) < SVD_MARGIN * tol
    assert not near.any(), f"{spec['name']}: singular values {s} too near svd_tol {tol}"
    if spec["method"] != "leace":
        return
    _, sxx, _ = ref.moments(x, zm)
    lam = np.linalg.eigvalsh(ref.sigma_xx(sxx, x.shape[0], spec["shrinkage"]))
    cut = lam[-1] * x.shape[1] * ref.EPS
    near = (lam > cut / EIG_MARGIN) & (lam < cut * EIG_MARGIN)
    assert not near.any(), f"{spec['name']}: eigenvalues {lam[near]} near the cut {cut}"


def run_case(spec):
    """Fits one case both ways, checks agreement; returns the arrays to store."""
    x, z, zm = make_case(spec)
    r = ref.fit(x, zm, method=spec["method"], affine=spec["affine"],
                shrinkage=spec["shrinkage"],
                constrain_cov_trace=spec["constrain_cov_trace"],
                svd_tol=spec["svd_tol"])
    P_ce, bias_ce, mix_ce = fit_concept_erasure(x, zm, spec)
    check_well_posed(x, zm, spec, r)
    check_streaming_stable(x, zm, spec, r)
    dP, db = rel(r.P, P_ce), rel(r.bias, bias_ce) if spec["affine"] else 0.0
    assert dP <= AGREEMENT_TOL, f"{spec['name']}: P differs by {dP:.3e}"
    assert db <= AGREEMENT_TOL, f"{spec['name']}: bias differs by {db:.3e}"
    assert mix_ce == r.mixture, f"{spec['name']}: mixture branch disagrees"
    assert not r.mixture, f"{spec['name']}: mixture branch taken (round-off?)"
    if not spec["affine"]:
        assert not np.any(bias_ce) and not np.any(r.bias)
    return dict(x=x, z=z, zm=zm, r=r, P_ce=P_ce, bias_ce=bias_ce, dP=dP)


def write_case(grp, spec, res):
    """Stores one case group (layout in the module docstring)."""
    x, r = res["x"], res["r"]
    a = grp.attrs
    a["method"] = np.int32(0 if spec["method"] == "leace" else 1)
    a["affine"] = np.int32(spec["affine"])
    a["shrinkage"] = np.int32(spec["shrinkage"])
    a["constrain_cov_trace"] = np.int32(spec["constrain_cov_trace"])
    a["svd_tol"] = np.float64(spec["svd_tol"])
    a["z_kind"] = np.int32(0 if spec["z_kind"] == "classes" else 1)
    a["k"] = np.int64(spec["k"])
    a["z_dim"] = np.int64(res["zm"].shape[1])
    a["n"], a["d"] = np.int64(x.shape[0]), np.int64(x.shape[1])
    a["rank"] = np.int64(r.info["rank"])
    a["mixture"] = np.int32(r.mixture)
    a["seed"] = np.int64(spec["seed"])
    a["description"] = spec["description"]
    grp.create_dataset("x", data=x.astype(np.float64))
    zdt = np.int32 if spec["z_kind"] == "classes" else np.float64
    grp.create_dataset("z", data=np.ascontiguousarray(res["z"], dtype=zdt))
    grp.create_dataset("P_ref", data=r.P)
    grp.create_dataset("bias_ref", data=r.bias)
    grp.create_dataset("P_ce", data=res["P_ce"])
    grp.create_dataset("bias_ce", data=res["bias_ce"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--out", default=DEFAULT_OUT)
    args = ap.parse_args()
    torch.set_num_threads(1)
    results = [(spec, run_case(spec)) for spec in CASES]
    worst = max(res["dP"] for _, res in results)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    with h5py.File(tmp, "w", track_order=True) as f:
        f.attrs["format"] = "culeace-reference-erasers"
        f.attrs["version"] = np.int32(1)
        f.attrs["generator"] = "tests/py/gen_reference_fixtures.py"
        f.attrs["concept_erasure_version"] = metadata.version("concept-erasure")
        f.attrs["torch_version"] = str(torch.__version__)
        f.attrs["numpy_version"] = np.__version__
        f.attrs["agreement_tol"] = AGREEMENT_TOL
        f.attrs["max_rel_diff_P"] = worst
        cases = f.create_group("cases", track_order=True)
        for spec, res in results:
            write_case(cases.create_group(spec["name"]), spec, res)
            r = res["r"]
            print(f"{spec['name']:34s} n={res['x'].shape[0]:4d} d={res['x'].shape[1]:3d} "
                  f"rank={r.info['rank']} dP={res['dP']:.2e}")
    os.replace(tmp, args.out)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes); "
          f"max numpy-vs-torch rel diff on P {worst:.3e}")


if __name__ == "__main__":
    main()
