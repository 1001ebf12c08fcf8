"""The orchestration: everything that runs plugins — the plugin registry, configuration, the
training engine, tracking, sweeps and their backends, reports, reproductions, the benchmark and
the command line. It imports :mod:`twcore.contract`; the contract never imports it."""
