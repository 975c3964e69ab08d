"""Utilities shared by the experiments (never imported by the library)."""
