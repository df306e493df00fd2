"""Model backends for narrators and evaluation (transformers, vLLM, OpenAI-compatible) and where weights come from."""
