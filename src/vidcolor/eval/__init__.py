"""Quality metrics and the streaming evaluation of whole clips (vidcolor eval)."""
