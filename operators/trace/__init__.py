"""The trace model: the line tracer, canonical value text, and views over a trace (loops, iterations)."""
