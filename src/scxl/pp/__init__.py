"""Preprocessing: ``xl.pp.*`` — prepare inputs for the ensembles."""

from ._covariates import append_covariates

__all__ = ["append_covariates"]
