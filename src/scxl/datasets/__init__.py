"""Example and reference data sets: ``xl.datasets``.

* :func:`pbmc68k` — 700 labelled PBMCs bundled with Scanpy (no download).
* :func:`synthetic` — simulated single-cell or bulk data with planted marker genes.
* Real public data read from ``xl.settings.datasetdir`` (or ``SCXL_DATASETDIR``):
  :func:`tcga6`, :func:`gtex26`, :func:`tissues7`, :func:`pancreas`,
  :func:`brca_multiomics`, :func:`eccite_pbmc`, :func:`hpa_tissue_profiles`,
  :func:`tissue_specific_genes`, :func:`housekeeping_genes`, :func:`transcription_factors`,
  :func:`gene_annotation`.

Nothing is read or imported (Scanpy, mudata) until a loader is called.
"""

from ._pbmc import pbmc68k
from ._real import (
    brca_multiomics,
    eccite_pbmc,
    gene_annotation,
    gtex26,
    housekeeping_genes,
    hpa_tissue_profiles,
    pancreas,
    tcga6,
    tissue_specific_genes,
    tissues7,
    transcription_factors,
)
from ._synthetic import synthetic

__all__ = [
    "brca_multiomics",
    "eccite_pbmc",
    "gene_annotation",
    "gtex26",
    "hpa_tissue_profiles",
    "housekeeping_genes",
    "pancreas",
    "pbmc68k",
    "synthetic",
    "tcga6",
    "tissue_specific_genes",
    "tissues7",
    "transcription_factors",
]
