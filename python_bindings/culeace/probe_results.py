"""probe_results.py — ProbeResults, what culeace.probe_layers returns: per
layer the mean, std and per-fold values of each metric, as a JSON-ready dict
(the key names of `culeace probe --json`), the CLI's table, and a matplotlib
plot of accuracy per layer with the majority baseline, control and erased
accuracy."""

import math

import numpy as np

METRICS = ("accuracy", "balanced_accuracy", "auroc", "log_loss", "majority",
           "control_accuracy", "erased_accuracy")


def _num(v):
    """A float for JSON: None for NaN/Inf."""
    v = float(v)
    return None if math.isnan(v) or math.isinf(v) else v


class Metric:
    """One metric of one layer: .folds (F,) float64 (NaN where undefined),
    .mean and .std (population) over the defined folds."""

    def __init__(self, folds, mean, std):
        self.folds = np.asarray(folds, dtype=np.float64)
        self.mean, self.std = float(mean), float(std)

    def to_dict(self):
        return {"mean": _num(self.mean), "std": _num(self.std),
                "folds": [_num(v) for v in self.folds]}

    def __repr__(self):
        return f"Metric(mean={self.mean:.4g}, std={self.std:.4g})"


class LayerResult:
    """The probes of one layer: .name, .index (position in the sweep),
    .rows, .metrics (name -> Metric, None when not computed), .selectivity
    (accuracy - control accuracy, NaN without control), .converged (every
    probe reached tol), .max_iterations."""

    def __init__(self, index, name, rows, metrics, selectivity, converged,
                 max_iterations):
        self.index, self.name, self.rows = index, name, rows
        self.metrics = metrics
        self.selectivity = float(selectivity)
        self.converged, self.max_iterations = bool(converged), int(max_iterations)

    def __getattr__(self, key):
        metrics = self.__dict__.get("metrics", {})
        if key in metrics:
            return metrics[key]
        raise AttributeError(key)

    def to_dict(self):
        d = {"layer": self.index, "name": self.name, "rows": self.rows}
        for key in METRICS:
            m = self.metrics.get(key)
            d[key] = m.to_dict() if m is not None else None
            if key == "control_accuracy":
                d["selectivity"] = _num(self.selectivity)
        d["converged"] = self.converged
        d["max_iterations"] = self.max_iterations
        return d


class ProbeResults:
    """Results of a probe sweep. results["name"] (or results[i]) is a
    LayerResult; results.mean("accuracy") / .std(...) are arrays over the
    layers; .best is the layer with the highest mean accuracy (the first
    on ties); .settings, .classes (label values of classes 0..k-1),
    .class_counts, .folds (fold of every row) and .control (None, or the
    seed the control labels were drawn with and their class counts),
    .fold_class_counts (F, k) rows per fold and class."""

    def __init__(self, layers, settings, classes, class_counts, folds,
                 fold_class_counts, fold_unit, n_groups, control):
        self.layers = layers
        self.settings = settings
        self.classes = list(classes)
        self.class_counts = [int(c) for c in class_counts]
        self.folds = np.asarray(folds)
        self.fold_class_counts = np.asarray(fold_class_counts, dtype=np.int64)
        self.fold_unit, self.n_groups, self.control = fold_unit, n_groups, control

    # ---- access -----------------------------------------------------------
    @property
    def names(self):
        return [L.name for L in self.layers]

    def __len__(self):
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def __getitem__(self, key):
        if isinstance(key, int):
            return self.layers[key]
        for L in self.layers:
            if L.name == key:
                return L
        raise KeyError(f"no layer named {key!r} (layers: {self.names})")

    def _per_layer(self, metric, attr):
        if metric not in METRICS:
            raise KeyError(f"unknown metric {metric!r}: one of {METRICS}")
        return np.array([getattr(L.metrics[metric], attr)
                         if L.metrics.get(metric) is not None else math.nan
                         for L in self.layers])

    def mean(self, metric="accuracy"):
        return self._per_layer(metric, "mean")

    def std(self, metric="accuracy"):
        return self._per_layer(metric, "std")

    @property
    def best(self):
        best = self.layers[0]
        for L in self.layers[1:]:
            if L.accuracy.mean > best.accuracy.mean:
                best = L
        return best

    # ---- reports ----------------------------------------------------------
    def to_dict(self):
        """JSON-serialisable: the key names of `culeace probe --json`
        (without the file paths and MDL, which a sweep over arrays has not)."""
        cnt, b = self.fold_class_counts, self.best
        return {
            "fold_unit": self.fold_unit,
            "settings": dict(self.settings),
            "classes": [v.item() if hasattr(v, "item") else v
                        for v in self.classes],
            "class_counts": self.class_counts,
            "n_groups": self.n_groups,
            "folds": {"sizes": [int(s) for s in cnt.sum(axis=1)],
                      "class_counts": cnt.tolist(),
                      "assignment": [int(f) for f in self.folds]},
            "control": dict(self.control) if self.control else None,
            "layers": [L.to_dict() for L in self.layers],
            "best_layer": {"layer": b.index, "name": b.name,
                           "accuracy": _num(b.accuracy.mean)},
        }

    def table(self):
        """The table `culeace probe` prints (best layer marked with *)."""
        s, bin_ = self.settings, len(self.classes) == 2
        ctrl, era = s["control"], s["erase"]

        def cell(v, fmt):
            return "-" if math.isnan(v) else fmt % v

        head = "  %-12s %8s  %-15s %7s" % ("layer", "rows", "accuracy", "bal.acc")
        if bin_:
            head += " %7s" % "AUROC"
        head += " %8s %8s" % ("logloss", "majority")
        if ctrl:
            head += " %8s %8s" % ("control", "select.")
        if era:
            head += " %8s" % "erased"
        lines = [head]
        best = self.best
        for L in self.layers:
            a = L.accuracy
            acc = "-" if math.isnan(a.mean) else "%.3f +- %.3f" % (a.mean, a.std)
            row = "%c %-12s %8d  %-15s" % ("*" if L is best else " ", L.name,
                                            L.rows, acc)
            row += " %7s" % cell(L.balanced_accuracy.mean, "%.3f")
            if bin_:
                row += " %7s" % cell(L.auroc.mean, "%.3f")
            row += " %8s" % cell(L.log_loss.mean, "%.4f")
            row += " %8s" % cell(L.majority.mean, "%.3f")
            if ctrl:
                row += " %8s" % cell(L.control_accuracy.mean, "%.3f")
                row += " %8s" % cell(L.selectivity, "%+.3f")
            if era:
                row += " %8s" % cell(L.erased_accuracy.mean, "%.3f")
            lines.append(row)
        lines.append("* best layer: %s (accuracy %.3f +- %.3f over %d folds, "
                     "majority baseline %.3f)" % (best.name, best.accuracy.mean,
                                                  best.accuracy.std, s["folds"],
                                                  best.majority.mean))
        unconv = sum(not L.converged for L in self.layers)
        if unconv and s["probe"] == "logistic":
            lines.append("note: some probes of %d layer%s stopped at --max-iter "
                         "%d before reaching --tol %g" % (
                             unconv, "" if unconv == 1 else "s",
                             s["max_iter"], s["tol"]))
        lines.append("%s probes, C = %g, %d-fold %s cross-validation (seed %d); "
                     "std over folds" % (
                         s["probe"], s["C"], s["folds"],
                         "stratified" if self.fold_unit == "row"
                         else "stratified group", s["seed"]))
        if era:
            lines.append("erased: accuracy after --erase-method %s, fitted on "
                         "each fold's training rows" % s["erase_method"])
        return "\n".join(lines) + "\n"

    def __str__(self):
        return self.table()

    def __repr__(self):
        b = self.best
        return (f"ProbeResults({len(self.layers)} layers, {self.settings['folds']} "
                f"folds; best {b.name!r}: accuracy {b.accuracy.mean:.3f})")

    def plot(self, path=None, ax=None):
        """Accuracy +- std per layer, the majority baseline, and the control
        and erased accuracy when computed. Draws on `ax` when given, else on
        a new figure; saves to `path` when given (through the Agg canvas, so
        no display is needed). Returns (figure, axes)."""
        if ax is None:
            if path is not None:
                from matplotlib.backends.backend_agg import FigureCanvasAgg
                from matplotlib.figure import Figure
                fig = Figure(figsize=(max(5.0, 0.5 * len(self.layers) + 3), 3.6))
                FigureCanvasAgg(fig)
                ax = fig.add_subplot()
            else:
                import matplotlib.pyplot as plt
                fig, ax = plt.subplots(figsize=(max(5.0, 0.5 * len(self.layers) + 3), 3.6))
        else:
            fig = ax.figure
        x = np.arange(len(self.layers))
        ax.errorbar(x, self.mean("accuracy"), yerr=self.std("accuracy"),
                    marker="o", capsize=3, label="probe accuracy")
        ax.plot(x, self.mean("majority"), "k--", lw=1, label="majority baseline")
        if self.settings["control"]:
            ax.errorbar(x, self.mean("control_accuracy"),
                        yerr=self.std("control_accuracy"), marker="s",
                        capsize=3, alpha=0.8, label="control task")
        if self.settings["erase"]:
            ax.errorbar(x, self.mean("erased_accuracy"),
                        yerr=self.std("erased_accuracy"), marker="v",
                        capsize=3, alpha=0.8, label="after LEACE")
        ax.set_xticks(x)
        ax.set_xticklabels(self.names)
        ax.set_xlabel("layer")
        ax.set_ylabel("held-out accuracy")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        if path is not None:
            fig.savefig(path, bbox_inches="tight")
        return fig, ax
