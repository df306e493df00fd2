"""Synthesis of new training material: inputs for bare functions, and (by others) problems and solutions."""
