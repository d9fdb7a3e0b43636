"""messa.crypto."""
