"""Faces: photo -> faces, the first half of the pipeline.

load image (images.py) -> detect (detector.py, over pyramid.py) -> landmarks (landmarks.py)
-> align (align.py) -> embed (descriptor.py), wired together and batched by engine.py.
base.py is the contract every engine implements (`FaceFinder`); models/ holds the pinned weight
files, dlib's file format and the parsed-tensor cache; threads.py and memory.py tune the CPU.

Imports nothing from the rest of photosearch. Nothing heavy loads at import time: torch and the
models load when an engine first needs them.
"""
