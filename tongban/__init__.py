"""tongban: shared command line, configuration and logging."""
