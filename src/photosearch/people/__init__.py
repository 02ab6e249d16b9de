"""People: every face of an album grouped into the people it shows, kept up to date.

- `neighbours`: each face's nearest faces (exact blocked matrix products; faiss past 200k);
- `grouping`: average linkage over that graph, one face per photo, corrected people kept whole;
- `store`: people.json beside the index (people, names, corrections), local or on S3;
- `album`: bringing the saved people up to an index snapshot (new faces join, ids stay);
- `corrections`: name, merge, remove a face ("not this person"), split;
- `listing`: what the CLI and the app show (photo counts, cover faces, search references);
- `refresh`: one call to load, update and save an index's people (the CLI's and the app's);
- `quality`: BCubed precision/recall/F1 of a grouping against labels.

Imports storage/, faces/, index/ and search/ only.
"""
