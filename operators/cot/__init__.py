"""Chain of thought: the template narrator, the claim forms, the verifier, and the prompts a model sees."""
