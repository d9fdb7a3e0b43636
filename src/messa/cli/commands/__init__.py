"""The ``messa`` subcommands, one module per family."""
