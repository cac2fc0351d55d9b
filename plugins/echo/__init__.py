"""tnode plugin: echo (being built)."""
