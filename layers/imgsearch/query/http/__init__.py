"""The query HTTP API: Powertools resolver, routes, request and response models."""
