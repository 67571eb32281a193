"""Engines: the contract (base) and its two implementations, devc (the paper) and classic."""
