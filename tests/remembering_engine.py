"""A real FaceEngine that computes identical pixels once: keeps indexing tests' time bounded."""

from __future__ import annotations

import hashlib

from photosearch.faces.base import EngineWrapper

MAX_SIDE = 640  # small working photos: the cheapest real indexing of the test albums


class RememberingEngine(EngineWrapper):
    """The real engine; identical pixels are computed once (`computed` counts real work).
    Photos go one at a time (EngineWrapper): `seen` stays in order."""

    def __init__(self, max_side: int = MAX_SIDE) -> None:
        from photosearch.faces.engine import FaceEngine

        super().__init__(FaceEngine(device="cpu", max_side=max_side))
        self.device = self.engine.device
        self.answers: dict[bytes, list] = {}
        self.computed = 0
        self.seen: list[str] = []  # album keys of the photos handed to the engine, in order

    def faces_for_images(self, images):
        self.seen += [image.source for image in images]
        keys = [
            hashlib.blake2b(image.pixels.tobytes() + repr(image.pixels.shape).encode()).digest()
            for image in images
        ]
        missing = [(k, im) for k, im in zip(keys, images, strict=True) if k not in self.answers]
        if missing:
            found = self.engine.faces_for_images([image for _, image in missing])
            self.answers.update((k, faces) for (k, _), faces in zip(missing, found, strict=True))
            self.computed += len(missing)
        return [self.answers[k] for k in keys]
