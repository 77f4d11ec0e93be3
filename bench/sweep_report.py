"""sweep_report.py — bench/sweep.py's results as a report: the series
each point yields (medians), slopes of log time against log n and log d,
the goals, the markdown tables and the plots (matplotlib, SVG + PNG).

A point (see sweep.py) carries "series" (per variant: wall, rss_mib,
cpu_s summaries) and, for fit/apply points, "floor" (dsyrk_s, ssyrk_s,
dsyevd_s, dpotrf_s, read_s, copy_s, in_place_s summaries).
"""

import math
import os

# series -> (label, expected slope in n, in d, why)
FIT = [("culeace_fit", "culeace fit"), ("peer_fit", "h5py + concept-erasure"),
       ("floor_fit", "floor: max(read, dsyrk) + dsyevd"),
       ("floor_own", "own floor: max(read, SYRK as culeace runs it) + dpotrf")]
APPLY = [("culeace_apply_out", "culeace apply -o"),
         ("culeace_apply_inplace", "culeace apply --in-place"),
         ("peer_apply_out", "h5py + concept-erasure, new file"),
         ("peer_apply_inplace", "h5py + concept-erasure, in place"),
         ("floor_copy", "floor: read + write + fsync"),
         ("floor_in_place", "floor: read + write back + fsync")]
PROBE = [("culeace_probe", "culeace probe"),
         ("sklearn_probe", "h5py + scikit-learn"),
         ("culeace_probe_iter", "culeace probe, per L-BFGS iteration"),
         ("sklearn_probe_iter", "scikit-learn, per L-BFGS iteration")]
RSS = [("culeace_fit_rss", "culeace fit, peak RSS"),
       ("culeace_apply_out_rss", "culeace apply -o, peak RSS"),
       ("culeace_apply_inplace_rss", "culeace apply --in-place, peak RSS"),
       ("peer_fit_rss", "h5py + concept-erasure fit, peak RSS")]
EXPECTED = {
    "fit": ("1", "2 to 3", "n d^2 moments + d^3 factorisation"),
    "apply": ("1", "1", "one read and write of n d values (rank-1 edit)"),
    "probe": ("1", "1", "per iteration one pass over n d values; "
                        "iteration counts vary"),
    "rss": ("0", "2", "blocks of fixed rows; d x d matrices"),
}


def med(p, key):
    """The median of one series at point p (seconds, or MiB for *_rss)."""
    if key.endswith("_rss"):
        return p["series"][key[:-4]]["rss_mib"]["max"]
    if key == "floor_fit":
        f = p["floor"]
        return max(f["read_s"]["median"], f["dsyrk_s"]["median"]) + \
            f["dsyevd_s"]["median"]
    if key == "floor_own":  # the kernels culeace's fit runs (Cholesky path)
        f = p["floor"]
        if "dpotrf_s" not in f:
            return float("nan")
        syrk = f["ssyrk_s" if p["dtype"] in ("float16", "bfloat16")
                 else "dsyrk_s"]["median"]
        return max(f["read_s"]["median"], syrk) + f["dpotrf_s"]["median"]
    if key == "floor_copy":
        return p["floor"]["copy_s"]["median"]
    if key == "floor_in_place":
        return p["floor"]["in_place_s"]["median"]
    if key.endswith("_probe_iter"):
        who = key[:-len("_iter")]
        its = p["culeace_iterations" if who.startswith("culeace")
                else "sklearn_iterations"] or 0
        return p["series"][who]["wall"]["median"] / (its + 1)
    return p["series"][key]["wall"]["median"]


def spread(p, key):
    s = p["series"][key]["wall"]
    return f"{s['min']:.3g}..{s['max']:.3g}"


def with_spread(p, key):
    """'median (min..max)' of a series' wall times, or the median alone
    when there was one repeat."""
    s = p["series"][key]["wall"]
    if len(s["all"]) < 2:
        return f"{s['median']:.3f}"
    return f"{s['median']:.3f} ({s['min']:.3g}..{s['max']:.3g})"


def on_axis(pts, kind, axis):
    var = "rows" if axis == "n" else "dim"
    return sorted((p for p in pts if p["kind"] == kind and axis in p["axes"]),
                  key=lambda p: p[var])


def fit_slope(xs, ys):
    """Least-squares slope of log y on log x."""
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    sxx = sum((a - mx) ** 2 for a in lx)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sxx


def slopes(pts):
    """{series: {axis: {"all": slope, "top": slope of the largest 3,
    "points": k}}} for every series with at least 2 points on an axis."""
    out = {}
    groups = [("erase", FIT + APPLY + RSS), ("probe", PROBE)]
    for kind, keys in groups:
        for axis in ("n", "d"):
            line = on_axis(pts, kind, axis)
            if len(line) < 2:
                continue
            xs = [p["rows"] if axis == "n" else p["dim"] for p in line]
            for key, _ in keys:
                ys = [med(p, key) for p in line]
                if any(y <= 0 for y in ys):
                    continue
                e = {"all": fit_slope(xs, ys), "points": len(xs),
                     "range": [xs[0], xs[-1]]}
                if len(xs) > 3:
                    e["top"] = fit_slope(xs[-3:], ys[-3:])
                out.setdefault(key, {})[axis] = e
    return out


# ---- plots -----------------------------------------------------------------------

def plots(pts, folder):
    """time vs n and time vs d (log-log) as SVG and PNG; returns the paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    os.makedirs(folder, exist_ok=True)
    made = []
    panels = [("fit", "erase", FIT), ("apply", "erase", APPLY),
              ("probe (5 folds)", "probe", PROBE[:2])]
    for axis in ("n", "d"):
        extra = [("peak RSS", "erase", RSS)] if axis == "n" else []
        use = [x for x in panels + extra if on_axis(pts, x[1], axis)]
        if not use:
            continue
        fig, axs = plt.subplots(1, len(use), figsize=(4.2 * len(use), 3.8))
        axs = axs if len(use) > 1 else [axs]
        for ax, (title, kind, keys) in zip(axs, use):
            line = on_axis(pts, kind, axis)
            xs = [p["rows"] if axis == "n" else p["dim"] for p in line]
            for key, name in keys:
                ys = [med(p, key) for p in line]
                style = "--" if key.startswith("floor") else (
                    ":" if key.startswith(("peer", "sklearn")) else "-")
                ax.plot(xs, ys, style, marker="o", ms=3, label=name)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            fixed = (f"d = {line[0]['dim']}" if axis == "n"
                     else f"n = {line[0]['rows']}")
            ax.set_title(f"{title}, {fixed}", fontsize=9)
            ax.set_xlabel("rows n" if axis == "n" else "width d")
            ax.set_ylabel("MiB" if title == "peak RSS" else "seconds")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=6)
        fig.tight_layout()
        for ext in ("svg", "png"):
            path = os.path.join(folder, f"sweep_{axis}.{ext}")
            fig.savefig(path, dpi=90)
            made.append(path)
        plt.close(fig)
    return made


# ---- markdown --------------------------------------------------------------------

def size(p):
    s = f"{p['rows']} x {p['dim']}"
    if p["layers"] > 1:
        s += f" x {p['layers']}L"
    return s + (" f32" if p["dtype"] == "float32" else " f16"
                if p["dtype"] == "float16" else f" {p['dtype']}")


def order(pts, kind):
    """Points of a kind: n axis, then d axis, then the rest."""
    seen, out = set(), []
    for axis in ("n", "d", "dtype", "layers", "corner"):
        for p in on_axis(pts, kind, axis) if axis in ("n", "d") else [
                q for q in pts if q["kind"] == kind and axis in q["axes"]]:
            if id(p) not in seen:
                seen.add(id(p))
                out.append(p)
    return out


def fit_table(pts):
    rows = ["| size | culeace s | spread | peer s | peer process s | "
            "peer / culeace | peer process / culeace | floor s | x floor | "
            "own floor s | x own floor | culeace RSS MiB | peer RSS MiB | dP |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
            "---:|"]
    for p in order(pts, "erase"):
        c, pe = med(p, "culeace_fit"), med(p, "peer_fit")
        whole = p["peer_whole_s"]["fit"]["median"]
        fl, own = med(p, "floor_fit"), med(p, "floor_own")
        rows.append(
            f"| {size(p)} | {c:.3f} | {spread(p, 'culeace_fit')} | {pe:.3f} | "
            f"{whole:.3f} | {pe / c:.2f} | {whole / c:.2f} | {fl:.3f} | "
            f"{c / fl:.2f} | {own:.3f} | {c / own:.2f} | "
            f"{med(p, 'culeace_fit_rss'):.0f} | "
            f"{med(p, 'peer_fit_rss'):.0f} | {p['agreement']['dP']:.1e} |")
    return rows


def apply_table(pts):
    rows = ["| size | -o s | in-place s | peer new file s | peer in place s | "
            "floor copy s | floor in place s | peer / -o | peer / in-place | "
            "-o x floor | in-place x floor | RSS -o MiB | RSS in-place MiB | "
            "diff vs peer |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
            "---:|"]
    for p in order(pts, "erase"):
        o, i = med(p, "culeace_apply_out"), med(p, "culeace_apply_inplace")
        po, pi = med(p, "peer_apply_out"), med(p, "peer_apply_inplace")
        fo, fi = med(p, "floor_copy"), med(p, "floor_in_place")
        rows.append(
            f"| {size(p)} | {with_spread(p, 'culeace_apply_out')} | "
            f"{with_spread(p, 'culeace_apply_inplace')} | {po:.3f} | {pi:.3f} | "
            f"{fo:.3f} | {fi:.3f} | {po / o:.2f} | {pi / i:.2f} | "
            f"{o / fo:.2f} | {i / fi:.2f} | "
            f"{med(p, 'culeace_apply_out_rss'):.0f} | "
            f"{med(p, 'culeace_apply_inplace_rss'):.0f} | "
            f"{p['agreement']['apply_max_diff']:.1e} |")
    return rows


def probe_table(pts):
    rows = ["| size | culeace s | spread | sklearn s | sklearn / culeace | "
            "culeace acc % | sklearn acc % | max fold diff pp | iterations "
            "culeace / sklearn | culeace ms / iteration | sklearn ms / "
            "iteration |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for p in order(pts, "probe"):
        c, s = med(p, "culeace_probe"), med(p, "sklearn_probe")
        rows.append(
            f"| {size(p)} | {c:.3f} | {spread(p, 'culeace_probe')} | {s:.3f} | "
            f"{s / c:.2f} | {p['culeace_accuracy'] * 100:.2f} | "
            f"{p['sklearn_accuracy'] * 100:.2f} | {p['max_fold_diff_pp']:.2f} | "
            f"{p['culeace_iterations']} / {p['sklearn_iterations']} | "
            f"{med(p, 'culeace_probe_iter') * 1e3:.1f} | "
            f"{med(p, 'sklearn_probe_iter') * 1e3:.1f} |")
    return rows


def slope_table(sl):
    rows = ["| series | slope in n | slope in d | expected n / d | why |",
            "|---|---:|---:|---:|---|"]
    for group, keys in (("fit", FIT), ("apply", APPLY), ("probe", PROBE),
                        ("rss", RSS)):
        en, ed, why = EXPECTED[group]
        for key, name in keys:
            if key not in sl:
                continue

            def cell(axis):
                e = sl[key].get(axis)
                if not e:
                    return ""
                s = f"{e['all']:.2f}"
                if "top" in e:
                    s += f" (top 3: {e['top']:.2f})"
                return s
            rows.append(f"| {name} | {cell('n')} | {cell('d')} | {en} / {ed} "
                        f"| {why} |")
    return rows


def goals(pts):
    """(goal, measured, met) rows for the 2-core CPU goals."""
    er = [p for p in pts if p["kind"] == "erase"]
    f16 = [p for p in er if p["dtype"] == "float16"]
    pr = [p for p in pts if p["kind"] == "probe"]
    out = []

    def worst(items, fn, best_high):
        vals = [(fn(p), size(p)) for p in items]
        return (min if best_high else max)(vals)

    if f16:
        v, at = worst(f16, lambda p: p["peer_whole_s"]["fit"]["median"] /
                      med(p, "culeace_fit"), True)
        v2, at2 = worst(f16, lambda p: med(p, "peer_fit") /
                        med(p, "culeace_fit"), True)
        out.append(("fit >= 3x faster than h5py + concept-erasure end to end "
                    "(float16)", f"lowest {v:.2f} at {at} (whole peer process); "
                    f"{v2:.2f} at {at2} with the peer's imports left out",
                    v >= 3))
    if er:
        v, at = worst(er, lambda p: med(p, "culeace_fit") / med(p, "floor_fit"),
                      False)
        v2, at2 = worst(er, lambda p: med(p, "culeace_fit") /
                        med(p, "floor_own"), False)
        out.append(("fit within 1.5x of the SYRK + eigh floor, and of the "
                    "floor of the kernels it runs",
                    f"worst {v:.2f}x at {at}; own floor (SYRK in its "
                    f"precision + dpotrf) worst {v2:.2f}x at {at2}",
                    v <= 1.5 and v2 <= 1.5))
    if pr:
        v, at = worst(pr, lambda p: med(p, "sklearn_probe") /
                      med(p, "culeace_probe"), True)
        out.append(("probe >= 10x faster than scikit-learn at equal accuracy",
                    f"lowest {v:.2f} at {at}", v >= 10))
    if er:
        v, at = worst(er, lambda p: med(p, "culeace_apply_out") /
                      med(p, "floor_copy"), False)
        out.append(("apply -o within 1.5x of read + write",
                    f"worst {v:.2f}x at {at}", v <= 1.5))
        v, at = worst(er, lambda p: med(p, "culeace_apply_inplace") /
                      med(p, "floor_in_place"), False)
        out.append(("apply --in-place within 1.5x of read + write back",
                    f"worst {v:.2f}x at {at}", v <= 1.5))
    line = on_axis(pts, "erase", "n")
    if len(line) >= 2:
        a, b = line[0], line[-1]
        parts = []
        ok = True
        for key in ("culeace_fit_rss", "culeace_apply_out_rss",
                    "culeace_apply_inplace_rss"):
            r = med(b, key) / med(a, key)
            ok = ok and r < 1.25
            parts.append(f"{key[:-4].replace('culeace_', '')} "
                         f"{med(a, key):.0f} -> {med(b, key):.0f} MiB")
        out.append((f"memory flat in n (peak RSS at n = {b['rows']} within "
                    f"1.25x of n = {a['rows']})", "; ".join(parts), ok))
    return out


def render(res, doc_dir):
    pts, m = res["points"], res["machine"]
    st = res["settings"]
    L = [f"Sweep on {m['cpu']} ({m['cores']} cores), run {m['date']}, commit "
         f"{m['commit']}; culeace --device {st['device']}; median of "
         f"{st['repeats']} repeats (the largest point: "
         f"{st['corner_repeats']}), spread min..max.", ""]
    er = [p for p in pts if p["kind"] == "erase"]
    pr = [p for p in pts if p["kind"] == "probe"]
    g = goals(pts)
    if g:
        L += ["| goal (2-core CPU) | measured | met |", "|---|---|---|"]
        L += [f"| {a} | {b} | {'yes' if c else 'no'} |" for a, b, c in g]
        L.append("")
    if er:
        L += ["**Fit** (one `culeace fit` process; the peer after its imports, "
              "and its whole process):", ""] + fit_table(pts) + [""]
        L += ["**Apply** (erasers from the fit above; every output durable "
              "for culeace and the floor, not for the peer):", ""]
        L += apply_table(pts) + [""]
    if pr:
        L += [f"**Probe** (one layer, 5 folds, C {st['C']}, tol {st['tol']}, "
              f"max_iter {st['max_iter']}; scikit-learn after its imports, on "
              "culeace's folds):", ""] + probe_table(pts) + [""]
    if res["slopes"]:
        L += ["**Slopes** of log time (log MiB for RSS) against log n and "
              "log d, least squares over the axis's points (\"top 3\": its "
              "three largest):", ""] + slope_table(res["slopes"]) + [""]
    for path in res.get("plots", []):
        if path.endswith(".svg"):
            rel = os.path.relpath(path, doc_dir)
            L.append(f"![{os.path.basename(path)}]({rel})")
    if res.get("plots"):
        L.append("")
    L += notes(res, er)
    return "\n".join(L) + "\n"


def notes(res, er):
    import benchlib
    m, la, st = res["machine"], res["load"], res["settings"]
    L = []
    if er:
        imp = [p["peer_import_s"]["median"] for p in er]
        same = all(p["agreement"]["inplace_equals_out"] for p in er)
        big = [p for p in er if p["rows"] > st["syrk_rows_max"]]
        L.append(
            f"- Peer imports (numpy, h5py, torch, concept-erasure) "
            f"{min(imp):.2f}..{max(imp):.2f} s per process, not in the peer "
            f"columns except \"peer process\". dP = max |P_culeace - P_ce| / "
            f"max |P_ce| (layer 0; the peer fits in float64); \"diff vs peer\" "
            f"= max |rows_culeace - rows_peer| / max |x| over the first rows "
            f"of layer 0 (both round to the file's type); culeace's in-place "
            f"rows equal its -o rows at every point: {'yes' if same else 'NO'}.")
        L.append(
            "- Floors: dsyrk over all rows + dsyevd(d) per layer "
            f"(`culeace_bench_floor ... fit`, once per repeat, with the "
            f"OpenBLAS kernel the CLI runs, OPENBLAS_CORETYPE="
            f"{m.get('blas_kernel')}); own floor: the kernels culeace's fit "
            "runs, ssyrk (float16 rows: float32 block products) or dsyrk "
            "(float32 rows) + dpotrf(d) (its Cholesky whitening of a "
            "well-conditioned covariance)"
            + (f"; above {st['syrk_rows_max']} rows the SYRKs are timed on "
               f"{st['syrk_rows_max']} rows and scaled by n / "
               f"{st['syrk_rows_max']}" if big else "")
            + "; read = the file's bytes from the page cache; copy = read + "
            "write to a new file + fsync; in place = read + write back at the "
            "same offsets + fsync (bench/sweep_floor.py). culeace's -o copies "
            "the file but for the activation datasets, which its edit reads "
            "from the input and writes into the copy; its in-place edit "
            "journals each block's old bytes before writing it: it moves "
            "more bytes than its floor.")
    busy = [f"{size(p)} {p['others_cores']:.2f}" for p in res["points"]
            if p["others_cores"] > 0.05]
    if busy:
        L.append("- Points during which other processes used more than 0.05 "
                 "cores on average: " + ", ".join(busy) + ".")
    L += benchlib.context_lines(
        la, m, f"torch {m.get('torch')}, concept-erasure "
               f"{m.get('concept_erasure')}, scikit-learn {m.get('scikit_learn')}")
    L.append(f"- Command: `{res['command']}`")
    return L
