"""Preprocessing: ``xl.pp.*`` — prepare inputs for the ensembles."""

from ._covariates import append_covariates
from ._csr import rewrite_as_csr

__all__ = ["append_covariates", "rewrite_as_csr"]
