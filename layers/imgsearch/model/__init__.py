"""The CLIP model runtime: bundles, preprocessing, tokenisation and onnxruntime sessions."""

from imgsearch.model.batch import embed_images
from imgsearch.model.bundle import Bundle, ModelManifest, open_bundle
from imgsearch.model.errors import BundleError, ImageError
from imgsearch.model.preprocess import ImageLimits, decode_image, preprocess, to_pixels
from imgsearch.model.session import ClipModel, l2_normalise

__all__ = [
    "Bundle",
    "BundleError",
    "ClipModel",
    "ImageError",
    "ImageLimits",
    "ModelManifest",
    "decode_image",
    "embed_images",
    "l2_normalise",
    "open_bundle",
    "preprocess",
    "to_pixels",
]
