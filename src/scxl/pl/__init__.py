"""Plotting: ``xl.pl.*``.

For rankings stored by scxl, Scanpy's ``sc.pl.rank_genes_groups_*`` plots work directly with
``key="xl_<method>"``.
"""

from ._training import training

__all__ = ["training"]
