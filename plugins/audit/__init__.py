"""Compliance audit of the live federation (issue 15)."""
