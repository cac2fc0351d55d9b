"""tnode plugin: scoring (being built)."""
