"""What comes in: problem formats read into calls, and the benchmark-overlap (contamination) check."""
