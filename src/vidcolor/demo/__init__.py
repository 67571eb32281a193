"""make demo: a generated clip colorized offline."""
