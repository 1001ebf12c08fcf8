"""The ``twcore`` command line."""
