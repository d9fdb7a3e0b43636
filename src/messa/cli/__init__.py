"""messa.cli."""
