"""imgsearch: serverless semantic image search on AWS (CLIP, usearch, Step Functions)."""

__version__ = "0.1.0"
