"""tnode plugin: libp2p (being built)."""
