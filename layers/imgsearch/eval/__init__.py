"""Retrieval metrics (precision, recall, nDCG, MRR) shared by Validate and model evaluation."""
