"""What users do with the service: the search and feedback log, its signed query ids, and the
joined records that quality metrics, the golden set and retraining read."""
