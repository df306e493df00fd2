"""tracecot's dataflow: config, CLI, sources, sinks, incremental state and run reports, on Ray Data."""

__version__ = "0.1.0"
