"""messa.matrix."""
