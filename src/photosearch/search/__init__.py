"""Search: reference faces + index -> every matching photo.

adaptive.py is the maths (exact distances, each reference judged against the album's stranger
crowd, query expansion) and calibration.py its constants; match.py is the one result type;
query.py joins an index snapshot and a face engine (reference photos, `find_matches`, used by
the CLI, the app and the endpoint alike); results.py acts on matches (zip, copy to a folder).

Imports storage/, faces/ and index/ only.
"""
