"""Per-row logic of tracecot, usable without Ray: sandbox, tracer, narrators, verifier."""
