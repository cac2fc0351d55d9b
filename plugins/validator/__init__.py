"""tnode plugin: validator (being built)."""
