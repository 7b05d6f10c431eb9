"""Example and reference data sets: ``xl.datasets``.

* :func:`pbmc68k` — 700 labelled PBMCs bundled with Scanpy (no download).
* :func:`synthetic` — simulated single-cell or bulk data with planted marker genes;
  :func:`synthetic_pathways` (sparse program-driven counts) and :func:`synthetic_combinatorial`
  (markers that act only in combination).
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
from ._simulators import synthetic_combinatorial, synthetic_pathways
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
    "synthetic_combinatorial",
    "synthetic_pathways",
    "tcga6",
    "tissue_specific_genes",
    "tissues7",
    "transcription_factors",
]
