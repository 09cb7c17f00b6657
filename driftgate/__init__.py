"""driftgate: the command-line entry point (``driftgate ...``) that ties the packages together."""
