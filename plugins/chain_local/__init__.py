"""tnode plugin: chain_local (being built)."""
