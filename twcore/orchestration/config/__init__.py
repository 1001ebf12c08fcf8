"""A run's configuration: the run-level schema, ``key=value`` overrides, YAML files, and their
composition with each plugin's typed options (declared with :func:`twcore.contract.option`)."""
