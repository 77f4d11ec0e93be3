"""test_bindings.py — the Python bindings (python_bindings/culeace) against
independent references: concept-erasure itself and the float64 numpy
reference (leace_reference.py) for the erasers, the CLI on the same file for
the eraser files and the in-place edit (bit for bit), plus zero-copy,
strided rows, and the bad inputs a Python user can pass."""

import os
import site
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import culeace
import leace_reference as ref

torch = pytest.importorskip("torch", reason="torch is needed for the tensor tests")

SAMPLE_LAYERS = ("0", "3", "6")


def planted(n=3000, d=24, k=2, seed=0, dtype=np.float32):
    """Rows whose first directions carry a k-class concept."""
    rng = np.random.default_rng(seed)
    z = rng.integers(0, k, n)
    x = rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) * 0.3
    x[:, :k] += 1.5 * np.eye(k)[z]
    return x.astype(dtype), z


# ---- erasers against concept-erasure and the float64 reference ------------
CE_OPTIONS = [dict(), dict(method="orth"), dict(affine=False),
              dict(shrinkage=False), dict(constrain_cov_trace=False),
              dict(svd_tol=0.5, shrinkage=False)]


@pytest.mark.parametrize("opts", CE_OPTIONS, ids=lambda o: ",".join(
    f"{k}={v}" for k, v in o.items()) or "defaults")
@pytest.mark.parametrize("k", [2, 4])
def test_eraser_matches_concept_erasure_float64(opts, k):
    ce = pytest.importorskip("concept_erasure")
    x, z = planted(k=k, seed=k)
    zm = np.eye(k)[z] if k > 2 else z[:, None].astype(np.float64)
    ours = culeace.LeaceFitter(x.shape[1], zm.shape[1], **opts)
    for lo in range(0, len(x), 700):  # streamed in uneven blocks
        ours.update(x[lo:lo + 700], zm[lo:lo + 700])
    e = ours.eraser
    theirs = ce.LeaceFitter.fit(torch.from_numpy(x).double(),
                                torch.from_numpy(zm), **opts).eraser
    P_ce = theirs.P.numpy()
    assert np.abs(e.P - P_ce).max() <= 1e-5 * np.abs(P_ce).max()
    if opts.get("affine", True):
        np.testing.assert_allclose(e.bias, theirs.bias.numpy(), rtol=1e-10, atol=1e-12)
    else:
        assert e.bias is None and theirs.bias is None
    r = ref.fit(x.astype(np.float64), zm, **opts)
    assert np.abs(e.P - r.P).max() <= 1e-9 * np.abs(r.P).max()


def test_fit_classmethods_and_class_labels():
    x, z = planted(k=3)
    one_hot = culeace.LeaceEraser.fit(x, np.eye(3)[z])
    labels = culeace.LeaceFitter(x.shape[1], 3).update(x, z).eraser  # one-hot
    np.testing.assert_allclose(labels.P, one_hot.P, atol=1e-12)
    assert labels.rank == 2 and labels.info["n_seen"] == len(x)
    xb, zb = planted(k=2)
    binary = culeace.LeaceEraser.fit(torch.from_numpy(xb), torch.from_numpy(zb))
    assert binary.rank == 1 and binary.info["z_dim"] == 1


def test_erased_rows_have_no_cross_covariance_with_labels():
    x, z = planted(k=3, d=16)
    zm = np.eye(3)[z]
    e = culeace.LeaceEraser.fit(x.astype(np.float64), zm)
    before = np.abs((x - x.mean(0)).T @ (zm - zm.mean(0))).max()
    y = e(x.astype(np.float64))
    after = np.abs((y - y.mean(0)).T @ (zm - zm.mean(0))).max()
    assert after <= 1e-9 * before


# ---- the CLI's files and edits --------------------------------------------
@pytest.fixture(scope="module")
def cli_erasers(tmp_path_factory, run_culeace, repo_root):
    out = tmp_path_factory.mktemp("cli") / "erasers.h5"
    run_culeace("fit", repo_root / "data/sample.h5", "--x", "/hidden", "--layers",
                ",".join(SAMPLE_LAYERS), "--z", "/labels", "-o", out, "--quiet")
    return out


def sample_layer(repo_root, name):
    with h5py.File(repo_root / "data/sample.h5") as f:
        return f[f"hidden/{name}"][:], f["labels"][:]


def test_bindings_fit_equals_cli_fit(cli_erasers, repo_root):
    from_cli = culeace.load_erasers(cli_erasers)
    assert list(from_cli) == list(SAMPLE_LAYERS)
    assert from_cli.meta["3"]["source_dataset"].endswith("hidden/3")
    for name in SAMPLE_LAYERS:
        x, y = sample_layer(repo_root, name)
        # float16 rows, 0/1 labels; the command line's default precision
        # (float32 products for 16-bit rows) is the bindings' "auto"
        ours = culeace.LeaceEraser.fit(x, y, precision="auto")
        theirs = from_cli[name]
        assert ours.rank == theirs.rank == 1
        assert np.abs(ours.P - theirs.P).max() <= 1e-10 * np.abs(theirs.P).max()
        np.testing.assert_allclose(ours.bias, theirs.bias, rtol=1e-12)
        f64 = culeace.LeaceEraser.fit(x, y)  # the bindings' default: float64
        assert np.abs(f64.P - theirs.P).max() <= 1e-4 * np.abs(theirs.P).max()


def test_apply_in_place_equals_cli_bit_for_bit(cli_erasers, repo_root, run_culeace, tmp_path):
    out = tmp_path / "erased.h5"
    # the bindings edit on the CPU; so does the CLI here (a GPU's float32
    # sums round some float16 outputs the other way)
    run_culeace("apply", cli_erasers, repo_root / "data/sample.h5",
                "--x", "/hidden", "--layers", ",".join(SAMPLE_LAYERS), "-o", out,
                "--device", "cpu", "--quiet")
    erasers = culeace.load_erasers(cli_erasers)
    with h5py.File(out) as f:
        for name in SAMPLE_LAYERS:
            want = f[f"hidden/{name}"][:]
            x, _ = sample_layer(repo_root, name)
            ptr = x.ctypes.data
            assert erasers[name].apply_(x) is x and x.ctypes.data == ptr
            assert x.tobytes() == want.tobytes()  # numpy float16, in place
            t = torch.from_numpy(sample_layer(repo_root, name)[0])
            tptr = t.data_ptr()
            erasers[name].apply_(t)
            assert t.data_ptr() == tptr
            assert t.numpy().tobytes() == want.tobytes()  # torch float16
            t32 = torch.from_numpy(sample_layer(repo_root, name)[0].astype(np.float32))
            erasers[name].apply_(t32)  # float32 edit: close to the float16 one
            np.testing.assert_allclose(t32.numpy(), want.astype(np.float32),
                                       atol=float(np.abs(want).max()) * 2e-3)


def test_saved_erasers_are_read_by_the_cli(tmp_path, run_culeace, repo_root):
    x, y = sample_layer(repo_root, "2")
    e = culeace.LeaceEraser.fit(x, y)
    path = tmp_path / "py.h5"
    culeace.save_erasers(path, {"2": e}, meta={"2": {"class_values": "0,1"}})
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]
    out = tmp_path / "out.h5"
    run_culeace("apply", path, repo_root / "data/sample.h5", "--x",
                "/hidden", "--layers", "2", "-o", out, "--device", "cpu", "--quiet")
    with h5py.File(out) as f:
        assert f["hidden/2"][:].tobytes() == e.apply_(x.copy()).tobytes()
    back = culeace.load_erasers(path)
    np.testing.assert_array_equal(back["2"].proj_left, e.proj_left)
    assert back.meta["2"]["class_values"] == "0,1"


# ---- zero-copy, shapes, strides, dtypes -------------------------------------
def test_strided_rows_and_leading_shape_edit_in_place():
    x, z = planted(d=12)
    e = culeace.LeaceEraser.fit(x, z)
    want = e(x)
    wide = np.full((len(x), 17), 7.0, dtype=np.float32)
    wide[:, :12] = x
    view = wide[:, :12]  # row stride 17 > d
    e.apply_(view)
    assert view.tobytes() == want.tobytes() or np.array_equal(view, want)
    assert (wide[:, 12:] == 7.0).all()  # the rest of each row untouched
    cube = torch.from_numpy(x.reshape(30, 100, 12).copy())
    e.apply_(cube)
    assert torch.equal(cube.reshape(-1, 12), torch.from_numpy(want))
    y = e(x)  # out of place: x unchanged, a new array
    assert y is not x and not np.shares_memory(x, y) and np.array_equal(y, want)


def test_bfloat16_tensor_within_one_rounding():
    x, z = planted(d=16)
    e = culeace.LeaceEraser.fit(x.astype(np.float64), z)
    xb = torch.from_numpy(x).to(torch.bfloat16)
    exact = e(xb.double().numpy())
    out = e(xb)
    assert out.dtype == torch.bfloat16 and out.shape == xb.shape
    err = np.abs(out.double().numpy() - exact)
    assert (err <= np.abs(exact) * 2.0 ** -8 + 1e-30).all()  # one bf16 rounding


def test_differentiable_call_under_autograd():
    x, z = planted(d=8)
    e = culeace.LeaceEraser.fit(x.astype(np.float64), z)
    t = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)
    y = e(t)
    y.sum().backward()
    P = torch.from_numpy(e.P)
    np.testing.assert_allclose(t.grad[0].numpy(), P.sum(0).numpy(), atol=1e-12)
    np.testing.assert_allclose(y.detach().numpy(), e(x.astype(np.float64)), atol=1e-12)


# ---- bad input: clear exceptions, nothing edited -----------------------------
@pytest.fixture(scope="module")
def eraser12():
    x, z = planted(d=12)
    return culeace.LeaceEraser.fit(x, z)


def test_wrong_feature_size(eraser12):
    with pytest.raises(ValueError, match=r"has 11 features .* fitted on 12"):
        eraser12.apply_(np.zeros((4, 11), np.float32))
    with pytest.raises(ValueError, match="x_dim"):
        culeace.LeaceFitter(12, 1).update(np.zeros((4, 11), np.float32), np.zeros(4))


def test_non_contiguous_feature_axis(eraser12):
    x = np.zeros((12, 40), np.float32).T  # (40, 12) with feature stride 40
    with pytest.raises(ValueError, match="feature axis is not contiguous"):
        eraser12.apply_(x)
    with pytest.raises(ValueError, match="feature axis is not contiguous"):
        eraser12.apply_(torch.zeros(12, 40).T)


def test_integer_tensors_and_arrays(eraser12):
    with pytest.raises(TypeError, match="torch.int64 tensor: culeace takes float16"):
        eraser12.apply_(torch.zeros(3, 12, dtype=torch.int64))
    with pytest.raises(TypeError, match="dtype int32"):
        eraser12(np.zeros((3, 12), np.int32))


def test_tensor_on_another_device_than_the_eraser(eraser12):
    on_gpu = eraser12.to("cuda:0")  # no GPU needed: refused before any CUDA call
    x = torch.ones(3, 12)
    with pytest.raises(ValueError, match=r"x is on cpu but the eraser is on cuda:0"):
        on_gpu.apply_(x)
    assert torch.equal(x, torch.ones(3, 12))


def test_read_only_and_autograd_tracked_inputs(eraser12):
    x = np.ones((3, 12), np.float32)
    x.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        eraser12.apply_(x)
    t = torch.ones(3, 12, requires_grad=True)
    with pytest.raises(ValueError, match="requires grad"):
        eraser12.apply_(t)


def test_library_errors_become_exceptions_with_the_message(tmp_path):
    x, z = planted(d=6, n=50)
    x[17, 2] = np.nan
    with pytest.raises(culeace.CuleaceError, match="row 17") as info:
        culeace.LeaceFitter(6, 1).update(x, z)
    assert info.value.status == "CULEACE_ERR_NONFINITE"
    bad = tmp_path / "not-erasers.h5"
    bad.write_bytes(b"this is not HDF5")
    with pytest.raises(culeace.CuleaceError, match="not-erasers.h5"):
        culeace.load_erasers(bad)
    with pytest.raises(ValueError, match="Unknown projection"):
        culeace.LeaceFitter(6, 1, method="oblique")
    with pytest.raises(ValueError, match=r"z\[1\] = 5 is not a class in 0..2"):
        culeace.LeaceFitter(6, 3).update(np.zeros((3, 6), np.float32), np.array([0, 5, 1]))


# Exits 0 when the interpreter running it can build the package itself:
# setuptools >= 70.1 (bdist_wheel built in), or >= 61 with wheel.
_CAN_BUILD = ("import importlib.util as u, setuptools, sys; "
              "v = tuple(int(p) for p in setuptools.__version__.split('.')[:2]); "
              "sys.exit(0 if v >= (70, 1) or (v >= (61, 0) and "
              "u.find_spec('wheel')) else 1)")


def test_pip_install_in_a_fresh_environment(tmp_path, repo_root):
    """`pip install ./python_bindings` gives a package that carries its own
    copy of the library and works outside the repository."""
    lib = repo_root / "build" / "libculeace.so"
    if not lib.is_file():
        pytest.skip("build/libculeace.so is not built")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True)
    env = dict(os.environ, CULEACE_PREBUILT_LIBRARY=str(lib))
    env.pop("CULEACE_LIBRARY", None)
    # Offline machines (a GPU node) build with this interpreter's own
    # setuptools rather than fetching the build requirements.
    local = subprocess.run([str(venv / "bin" / "python"), "-c", _CAN_BUILD],
                           capture_output=True).returncode == 0
    isolation = ["--no-build-isolation"] if local else []
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-deps",
                    *isolation, str(repo_root / "python_bindings")], check=True,
                   env=env, timeout=600)
    code = ("import culeace, numpy as np; "
            "e = culeace.LeaceEraser.fit(np.eye(4, dtype=np.float32).repeat(5, 0), "
            "np.arange(20) % 2); print(culeace.library_path, e.rank)")
    # A venv made from an interpreter that is itself a venv sees the base
    # interpreter's packages, not this one's: then numpy comes from here
    # (PYTHONPATH; a culeace found there instead would fail the path check).
    if subprocess.run([str(venv / "bin" / "python"), "-c", "import numpy"],
                      capture_output=True).returncode != 0:
        env["PYTHONPATH"] = os.pathsep.join(site.getsitepackages())
    p = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True,
                       text=True, cwd=tmp_path, env=env)
    assert p.returncode == 0, p.stderr
    path, rank = p.stdout.split()
    assert path.startswith(str(venv)) and path.endswith("_lib/libculeace.so")
    assert rank == "1"
    if (lib.parent / "libculeace_cuda.so").is_file():  # a CUDA build
        assert (Path(path).parent / "libculeace_cuda.so").is_file()


# ---- CUDA tensors (a GPU machine runs these; here they skip) ---------------
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "float64"])
def test_cuda_tensor_edit_matches_the_cpu_edit(dtype):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device visible to torch: CUDA tensor tests skip")
    if not culeace.cuda_available():
        pytest.skip("libculeace was built without CUDA or sees no GPU")
    x, z = planted(d=40, k=3)
    e = culeace.LeaceFitter(40, 3).update(x, z).eraser
    dt = getattr(torch, dtype)
    host = torch.from_numpy(x).to(dt)
    want = e.apply_(host.clone()).double()
    wide = torch.zeros(len(x), 45, dtype=dt, device="cuda")
    wide[:, :40] = host.cuda()
    view, ptr = wide[:, :40], wide.data_ptr()  # strided rows on the GPU
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):  # edited on torch's current stream
        e.to("cuda:0").apply_(view)
    side.synchronize()
    assert wide.data_ptr() == ptr and bool((wide[:, 40:] == 0).all())
    got = view.double().cpu()
    ulp = {"float32": 2.0 ** -20, "float64": 1e-12, "float16": 2.0 ** -10,
           "bfloat16": 2.0 ** -7}[dtype]
    # float32 edits differ in their order of sums: a few units in the last
    # place of the row's largest element (an edited element can be far
    # smaller than its row after the projection cancels it)
    row_mag = want.abs().amax(dim=1, keepdim=True)
    assert bool(((got - want).abs() <= row_mag * ulp + 1e-12).all())
    out = e.to("cuda:0")(host.cuda())  # out of place: a new CUDA tensor
    assert out.device.type == "cuda" and out.dtype == dt


def test_openblas_runs_the_cpus_kernel_not_the_fallback():
    """On VMs that hide the CPU model OpenBLAS may fall back to its slowest
    kernel (several times slower fits); the package picks the kernel of the
    CPU's instruction set while the library loads."""
    from culeace import _native
    want = _native._cpu_blas_kernel()
    if want is None or "OPENBLAS_CORETYPE" in os.environ:
        pytest.skip("no AVX2/AVX-512 x86-64 CPU, or OPENBLAS_CORETYPE set by the user")
    got = culeace.blas_kernel()
    assert got is not None and got.lower() not in ("prescott", "core2", "nehalem", "generic")
    assert "OPENBLAS_CORETYPE" not in os.environ  # restored after loading


def test_an_eraser_built_from_factors_round_trips_through_a_file(tmp_path):
    L = np.zeros((4, 1))
    L[0] = 1.0
    e = culeace.LeaceEraser(L, L.T.copy(), np.full(4, 0.5))
    path = tmp_path / "hand.h5"
    culeace.save_erasers(path, {"a": e})
    back = culeace.load_erasers(path)["a"]
    np.testing.assert_array_equal(back.P, e.P)
    np.testing.assert_array_equal(back.bias, e.bias)
    assert back.info["n_seen"] == 0 and back.info["z_dim"] == 1


def test_hook_on_a_hidden_state_of_another_width_is_refused(eraser12):
    model = torch.nn.Sequential(torch.nn.Linear(4, 6))
    for grad in (False, True):  # the in-place and the autograd path alike
        with torch.set_grad_enabled(grad), culeace.erase(model, {"0": eraser12}):
            with pytest.raises(ValueError, match=r"'0' has shape \(2, 6\) .* 12 features"):
                model(torch.zeros(2, 4))
