"""Problem synthesis: new problems from a model, kept only when execution agrees on them (dual agreement,
dedup and decontamination), and inputs for bare functions."""
