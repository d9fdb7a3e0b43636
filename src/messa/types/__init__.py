"""Immutable records shared by all layers."""
