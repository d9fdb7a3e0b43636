"""messa.store."""
