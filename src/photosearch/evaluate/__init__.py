"""Evaluate: accuracy on labelled face sets (LFW verification, find-every-photo retrieval).

Imports faces/ and search/; used by `photosearch eval` and the benchmarks.
"""
