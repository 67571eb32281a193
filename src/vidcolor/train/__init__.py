"""Training and fine-tuning of the devc networks with the paper's losses (``vidcolor train``)."""
