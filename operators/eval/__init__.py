"""Evaluation on execution benchmarks: prompts, answer extraction, and the official scoring rules."""
