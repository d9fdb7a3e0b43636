"""messa.client."""
