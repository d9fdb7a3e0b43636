"""messa.homeserver."""
