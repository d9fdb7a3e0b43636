"""Shared helpers for Messa's tests."""
