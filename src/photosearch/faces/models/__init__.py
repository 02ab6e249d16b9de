"""Model files (registry, checksums, cache) and dlib's serialization format."""
