"""Problem synthesis: operators that make new problems and keep only those that execution agrees on."""
