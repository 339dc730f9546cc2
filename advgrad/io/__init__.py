"""Loading models and data, and writing results to disk."""
