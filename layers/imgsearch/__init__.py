"""imgsearch: serverless semantic image search on AWS (CLIP, usearch, Step Functions)."""

__version__ = "0.1.0"

# onnxruntime must initialise before usearch's native module: usearch 2.26's wheel carries its
# own libstdc++, and importing onnxruntime after it crashes the process (SIGSEGV in
# std::codecvt). Every entry point imports this package before either library.
import onnxruntime  # noqa: F401
