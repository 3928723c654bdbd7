"""Quality metrics, embedding drift, and the monitor's report."""
