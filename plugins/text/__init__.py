"""tnode plugin: text (being built)."""
