"""Photosearch: find every photo of a person in an album."""

__version__ = "0.1.0"
