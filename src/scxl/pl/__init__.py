"""Plotting: ``xl.pl.*``.

For rankings stored by scxl, Scanpy's ``sc.pl.rank_genes_groups_*`` plots work directly with
``key="xl_<method>"``. Every plot takes ``ax=None``, ``return_fig=False`` and ``show=None``, and
returns its Axes (or the Figure; ``None`` with ``show=True``, as Scanpy's plots); there is no
``save=``: ``xl.pl.top_genes(adata, return_fig=True).savefig("top_genes.pdf")``. Colours follow
the colour-blind-safe Okabe–Ito palette.
"""

from ._evaluate import explainers, faithfulness
from ._rankings import contribution_vs_expression, contributions, top_genes
from ._reproducibility import reproducibility
from ._specificity import specificity
from ._training import training

__all__ = [
    "contribution_vs_expression",
    "contributions",
    "explainers",
    "faithfulness",
    "reproducibility",
    "specificity",
    "top_genes",
    "training",
]
