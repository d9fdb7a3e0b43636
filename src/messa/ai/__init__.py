"""messa.ai."""
