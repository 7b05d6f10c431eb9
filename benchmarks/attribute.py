"""Benchmark: scxl's exact fast attribution kernels vs plain Captum on the same models and data.

For each explainer with a fast kernel, ensembles of random one-hidden-layer MLPs (H=128,
BatchNorm with randomised running statistics, eval mode) are explained on the same cells with
the same references, once through ``scxl.explain.attribute_modules`` and once through Captum
(one call per model, cells in batches, results averaged over models as the engine does):

* saliency / input_x_gradient / guided_backprop: no reference;
* deeplift: Captum ``DeepLift`` with the zero reference;
* deeplift_shap: Captum ``DeepLiftShap`` with the same 20 references, real cells drawn from the
  data (scxl's default for DeepLiftShap, ``baseline="sample"``). Single-cell profiles are mostly
  zeros, and scxl skips the genes a reference does not express (exactly: they contribute
  nothing to the reference term);
* deeplift_shap_dense: the same with 20 dense references, per gene ``|N(mean, sd)|``, dense
  like those of the ``"universal"`` kind, where nothing can be skipped;
* feature_ablation: Captum ``FeatureAblation`` (zero reference, one gene at a time,
  16 perturbations per forward pass), only up to ``--max-ablation-genes`` genes;
* public deeplift_shap rows: the whole public call ``xl.tl.attribute(adata, method="deeplift_shap",
  ...)`` on an AnnData (statistics, reference draws, rankings and the stored layer included), once
  with the dense references as an array (same numbers as Captum) and once drawing ``"universal"``
  references per member (timed against Captum with the dense array: the same amount of work);
* integrated_gradients: Captum ``IntegratedGradients`` (default ``n_steps=50``, Gauss-Legendre)
  with the same 20 references (inputs expanded per reference and averaged, as DeepLiftShap
  does); scxl's closed form is exact, so its difference from 50-step Captum is Captum's
  discretisation error. Exactness is shown separately against Captum DeepLiftShap on the same
  references and against Captum IG with many Riemann steps on a few cells.

``max rel diff`` is ``max |scxl - captum| / max |captum|`` over the cells × genes matrix. Peak
memory is the peak resident-set growth during the call (sampled from ``/proc/self/statm`` every
2 ms), which, unlike ``tracemalloc``, sees torch allocations.

Run ``python benchmarks/attribute.py`` (or ``--quick``); ``--help`` lists the options.
"""

from __future__ import annotations

import argparse
import os
import threading
import time

import numpy as np
import torch

import scxl
from scxl.explain import attribute_modules
from scxl.explain._captum import quiet_captum
from scxl.models import MLP

_PAGE = os.sysconf("SC_PAGE_SIZE")


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * _PAGE


def _hwm() -> int | None:
    """The process's peak RSS (``VmHWM``, bytes), or ``None`` where /proc does not give it."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_hwm() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux >= 4.0); ``False`` where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return _hwm() is not None
    except OSError:
        return False


class PeakMemory:
    """Peak RSS growth (bytes) while the block runs.

    From the kernel's high-water mark (``VmHWM``, reset on entry), so nothing runs beside the timed
    code: a thread polling the RSS every 2 ms took the GIL often enough to slow the public
    DeepLiftShap call by about 12 % (8.5-8.9 s against 9.7-9.9 s, 1,000 cells × 20,000 genes).
    Where the mark cannot be reset, a polling thread is the fallback.
    """

    def __enter__(self):
        self.base = _rss()
        self.peak = self.base
        self._thread = None
        if not _reset_hwm():
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._watch, daemon=True)
            self._thread.start()
        return self

    def _watch(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss())
            time.sleep(0.002)

    def __exit__(self, *exc):
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        else:
            self.peak = max(self.peak, _hwm())
        self.peak = max(self.peak, _rss())
        self.bytes = self.peak - self.base
        return False


def make_models(n_models, n_genes, n_classes, hidden, seed):
    models = []
    for i in range(n_models):
        torch.manual_seed(seed + i)
        m = MLP(n_genes, n_classes, [hidden], batchnorm=True)
        bn = m.net[1]
        gen = torch.Generator().manual_seed(10_000 + seed + i)
        with torch.no_grad():
            bn.running_mean.copy_(torch.randn(hidden, generator=gen) * 0.3)
            bn.running_var.copy_(torch.rand(hidden, generator=gen) + 0.5)
            bn.weight.copy_(1 + 0.2 * torch.randn(hidden, generator=gen))
            bn.bias.copy_(0.2 * torch.randn(hidden, generator=gen))
        models.append(m.eval())
    return models


def load_data(n_genes, n_cells, seed):
    """PBMC (scanpy's pbmc68k_reduced, log-normalised raw) at 765 genes, else synthetic."""
    if n_genes == 765:
        try:
            import scanpy as sc

            adata = sc.datasets.pbmc68k_reduced()
            x = np.asarray(adata.raw.X.toarray(), dtype=np.float32)
            reps = int(np.ceil(n_cells / x.shape[0]))
            return np.concatenate([x] * reps)[:n_cells], "pbmc68k_reduced"
        except Exception:  # fall back to synthetic data of the same size
            pass
    rng = np.random.default_rng(seed)
    x = rng.gamma(0.8, 1.2, size=(n_cells, n_genes)) * (rng.random((n_cells, n_genes)) < 0.35)
    return x.astype(np.float32), "synthetic"


def captum_run(models, x, t, method, refs, batch, ig_steps=50, ig_method="gausslegendre"):
    """Plain Captum: one explainer object per model, cells in batches, mean over models."""
    from captum.attr import (
        DeepLift,
        DeepLiftShap,
        FeatureAblation,
        GuidedBackprop,
        InputXGradient,
        IntegratedGradients,
        Saliency,
    )

    out = np.zeros_like(x)
    xt, tt = torch.from_numpy(x), torch.from_numpy(t)
    rt = torch.from_numpy(refs)
    with quiet_captum():
        for m in models:
            for s in range(0, len(x), batch):
                xb, tb = xt[s : s + batch], tt[s : s + batch]
                if method == "saliency":
                    a = Saliency(m).attribute(xb, target=tb)
                elif method == "input_x_gradient":
                    a = InputXGradient(m).attribute(xb, target=tb)
                elif method == "guided_backprop":
                    a = GuidedBackprop(m).attribute(xb, target=tb)
                elif method == "deeplift":
                    a = DeepLift(m).attribute(xb, baselines=0.0, target=tb)
                elif method == "feature_ablation":
                    a = FeatureAblation(m).attribute(xb, baselines=0.0, target=tb, perturbations_per_eval=16)
                elif method == "deeplift_shap":
                    a = DeepLiftShap(m).attribute(xb, baselines=rt, target=tb)
                elif method == "integrated_gradients":
                    n, b = xb.shape[0], rt.shape[0]
                    a = IntegratedGradients(m).attribute(
                        xb.repeat_interleave(b, 0), baselines=rt.repeat(n, 1),
                        target=tb.repeat_interleave(b), n_steps=ig_steps, method=ig_method,
                        internal_batch_size=n * b,
                    ).reshape(n, b, -1).mean(1)
                else:
                    raise ValueError(method)
                out[s : s + batch] += a.detach().numpy()
    return out / len(models)


def rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def bench_size(args, n_genes, n_cells, rows):
    x, source = load_data(n_genes, n_cells, args.seed)
    models = make_models(args.n_models, n_genes, args.n_classes, args.hidden, args.seed)
    rng = np.random.default_rng(args.seed)
    t = rng.integers(0, args.n_classes, n_cells)
    refs = x[rng.choice(n_cells, args.n_refs, replace=False)]
    print(f"\n# G={n_genes} ({source}), {n_cells} cells, {len(models)} MLPs (H={args.hidden}, BN, eval), "
          f"{args.n_refs} references, {torch.get_num_threads()} threads", flush=True)
    methods = [m for m in args.methods if m != "feature_ablation"]
    if "feature_ablation" in args.methods and n_genes <= args.max_ablation_genes:
        methods.append("feature_ablation")  # Captum ablation costs G forward passes per cell
    extra = {}
    # "universal"-like dense references (per gene, |N(mean, sd)|): no zeros to skip
    dense = np.abs(rng.normal(x.mean(0), x.std(0) + 1e-6, size=(args.n_refs, n_genes))).astype(np.float32)
    for method in methods:
        name, method = method, method.removesuffix("_dense")
        refs_m = dense if name.endswith("_dense") else refs
        refs_arg = None
        if method in ("deeplift_shap", "integrated_gradients"):
            refs_arg = refs_m
        elif method in ("deeplift", "feature_ablation"):
            refs_arg = "zero"
        # warm-up (imports, first-call allocations), then best of --repeat timed runs
        attribute_modules(models[:1], x[:8], t[:8], method, references=refs_arg, progress=False)
        captum_run(models[:1], x[:8], t[:8], method, refs_m, args.captum_batch)
        sec_s = sec_c = np.inf
        for i in range(args.repeat):
            with PeakMemory() as mem_s:
                t0 = time.perf_counter()
                res = attribute_modules(models, x, t, method, references=refs_arg, progress=False)
                sec_s = min(sec_s, time.perf_counter() - t0)
            if i == 0 or sec_c < args.repeat_below:  # do not repeat very slow Captum runs
                with PeakMemory() as mem_c:
                    t0 = time.perf_counter()
                    cap = captum_run(models, x, t, method, refs_m, args.captum_batch)
                    sec_c = min(sec_c, time.perf_counter() - t0)
        ours = res.attributions
        rows.append(dict(
            G=n_genes, method=name, refs=(args.n_refs if refs_arg is refs_m else (1 if refs_arg else 0)),
            scxl_s=sec_s, captum_s=sec_c, scxl_cps=n_cells / sec_s, captum_cps=n_cells / sec_c,
            speedup=sec_c / sec_s, max_rel_diff=rel(ours, cap),
            scxl_mb=mem_s.bytes / 2**20, captum_mb=mem_c.bytes / 2**20,
        ))
        print(_fmt(rows[-1]), flush=True)
        if method == "integrated_gradients":
            extra["ig"] = ours
    if "ig" not in extra:
        return
    # exactness of the closed-form IG: vs Captum DeepLiftShap (same refs) and many-step Captum IG
    dls = captum_run(models, x, t, "deeplift_shap", refs, args.captum_batch)
    k = args.check_cells
    fine = captum_run(models[:1], x[:k], t[:k], "integrated_gradients", refs, k,
                      ig_steps=args.check_steps, ig_method="riemann_middle")
    ig1 = attribute_modules(models[:1], x[:k], t[:k], "integrated_gradients", references=refs,
                            progress=False).attributions
    coarse = captum_run(models[:1], x[:k], t[:k], "integrated_gradients", refs, k)
    print(f"  exact IG vs Captum DeepLiftShap (same {args.n_refs} refs, all cells/models): "
          f"max rel diff {rel(extra['ig'], dls):.1e}")
    print(f"  exact IG vs Captum IG, 1 model, {k} cells: n_steps={args.check_steps} riemann_middle "
          f"{rel(ig1, fine):.1e}; n_steps=50 gausslegendre {rel(ig1, coarse):.1e}", flush=True)


def bench_public(args, n_genes, n_cells, rows):
    """The same comparison through the public call ``xl.tl.attribute`` on an AnnData (everything included:
    reading, statistics, reference draws, rankings, the stored layer)."""
    import anndata as ad
    import pandas as pd

    x, _ = load_data(n_genes, n_cells, args.seed)
    models = make_models(args.n_models, n_genes, args.n_classes, args.hidden, args.seed)
    rng = np.random.default_rng(args.seed)
    t = rng.integers(0, args.n_classes, n_cells)
    dense = np.abs(rng.normal(x.mean(0), x.std(0) + 1e-6, size=(args.n_refs, n_genes))).astype(np.float32)
    classes = [f"c{i}" for i in range(args.n_classes)]
    genes = [f"g{j}" for j in range(n_genes)]
    spec = scxl.models.default_spec("mlp", n_genes, args.n_classes, hidden=[args.hidden], batchnorm=True, dropout=0.25)
    ens = scxl.models.Ensemble(models, classes=classes, var_names=genes, spec=spec, params={"groupby": "label"})
    adata = ad.AnnData(x, obs=pd.DataFrame({"label": pd.Categorical([classes[i] for i in t], categories=classes)},
                                           index=[f"cell{i}" for i in range(n_cells)]), var=pd.DataFrame(index=genes))
    for label, baseline in (("public deeplift_shap, refs array", dense), ("public deeplift_shap, universal", "universal")):
        scxl.tl.attribute(adata[:8].copy(), method="deeplift_shap", ensemble=ens, baseline=baseline, n_baselines=args.n_refs
                          if isinstance(baseline, str) else None)
        sec_s = np.inf
        for _ in range(args.repeat):
            with PeakMemory() as mem_s:
                t0 = time.perf_counter()
                scxl.tl.attribute(adata, method="deeplift_shap", ensemble=ens, baseline=baseline, overwrite=True,
                                  n_baselines=args.n_refs if isinstance(baseline, str) else None)
                sec_s = min(sec_s, time.perf_counter() - t0)
        with PeakMemory() as mem_c:
            t0 = time.perf_counter()
            cap = captum_run(models, x, t, "deeplift_shap", dense, args.captum_batch)
            sec_c = time.perf_counter() - t0
        diff = rel(np.asarray(adata.layers["xl_deeplift_shap"]), cap) if not isinstance(baseline, str) else np.nan
        rows.append(dict(G=n_genes, method=label, refs=args.n_refs, scxl_s=sec_s, captum_s=sec_c,
                         scxl_cps=n_cells / sec_s, captum_cps=n_cells / sec_c, speedup=sec_c / sec_s,
                         max_rel_diff=diff, scxl_mb=mem_s.bytes / 2**20, captum_mb=mem_c.bytes / 2**20))
        print(_fmt(rows[-1]), flush=True)


METHODS = ["saliency", "input_x_gradient", "guided_backprop", "deeplift", "deeplift_shap",
           "deeplift_shap_dense", "integrated_gradients", "feature_ablation"]

HEADER = (f"{'G':>6} {'method':<33} {'refs':>4} {'scxl s':>8} {'captum s':>9} {'scxl cells/s':>13} "
          f"{'captum cells/s':>15} {'speed-up':>9} {'max rel diff':>13} {'scxl MB':>8} {'captum MB':>10}")


def _fmt(r):
    return (f"{r['G']:>6} {r['method']:<33} {r['refs']:>4} {r['scxl_s']:>8.3f} {r['captum_s']:>9.3f} "
            f"{r['scxl_cps']:>13.1f} {r['captum_cps']:>15.1f} {r['speedup']:>8.1f}x {r['max_rel_diff']:>13.1e} "
            f"{r['scxl_mb']:>8.0f} {r['captum_mb']:>10.0f}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-cells", type=int, default=None, help="cells at G=765 (default 700; quick 200)")
    p.add_argument("--n-cells-large", type=int, default=None, help="cells at G=20000 (default 100; quick 40)")
    p.add_argument("--n-models", type=int, default=None, help="ensemble size (default 10; quick 3)")
    p.add_argument("--n-refs", type=int, default=20)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--n-classes", type=int, default=10)
    p.add_argument("--genes", type=str, default="765,20000", help="comma-separated gene counts")
    p.add_argument("--captum-batch", type=int, default=50, help="cells per Captum call")
    p.add_argument("--max-ablation-genes", type=int, default=1000,
                   help="benchmark feature_ablation only up to this many genes")
    p.add_argument("--check-cells", type=int, default=2)
    p.add_argument("--check-steps", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per cell of the table (best is kept)")
    p.add_argument("--repeat-below", type=float, default=20.0,
                   help="repeat Captum runs only when one takes less than this many seconds")
    p.add_argument("--methods", type=str, default=",".join(METHODS), help="comma-separated explainers")
    p.add_argument("--quick", action="store_true", help="small sizes (a couple of minutes)")
    p.add_argument("--no-public", action="store_true", help="skip the rows through the public xl.tl.attribute call")
    args = p.parse_args()
    args.methods = [m.strip() for m in args.methods.split(",")]
    unknown = set(args.methods) - set(METHODS)
    if unknown:
        p.error(f"unknown methods {sorted(unknown)}; choose from {METHODS}")
    args.n_cells = args.n_cells or (200 if args.quick else 700)
    args.n_cells_large = args.n_cells_large or (40 if args.quick else 100)
    args.n_models = args.n_models or (3 if args.quick else 10)
    if args.quick:
        args.check_steps = min(args.check_steps, 1000)
    scxl.settings.progress = False
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    print(HEADER)
    for g in (int(v) for v in args.genes.split(",")):
        bench_size(args, g, args.n_cells if g <= 1000 else args.n_cells_large, rows)
        if not args.no_public:
            bench_public(args, g, args.n_cells if g <= 1000 else args.n_cells_large, rows)
    print("\n" + HEADER)
    for r in rows:
        print(_fmt(r))


if __name__ == "__main__":
    main()
