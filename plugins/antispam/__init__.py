"""tnode plugin: antispam (being built)."""
