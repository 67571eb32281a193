"""vidcolor batch: pairing, manifest, and the run over a folder."""
