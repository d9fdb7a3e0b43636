"""Tests of messa.crypto."""
