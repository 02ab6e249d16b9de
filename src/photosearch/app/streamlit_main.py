"""`python -m photosearch.app.streamlit_main run page.py ...`: Streamlit, with uploads in memory.

Streamlit reads an upload with Starlette's form parser, which spools any file over 1 MB to an
(unlinked) temporary file on disk. The app promises that an uploaded reference photo is only
read in memory, so the spool threshold is raised to the upload limit before Streamlit starts:
an upload stays in memory (bounded by ``server.maxUploadSize``) and never reaches the disk.
"""

from __future__ import annotations

import sys

__all__ = ["keep_uploads_in_memory", "main"]


def keep_uploads_in_memory(limit_bytes: int) -> None:
    from starlette.formparsers import MultiPartParser

    MultiPartParser.spool_max_size = max(MultiPartParser.spool_max_size, limit_bytes)


def main() -> None:
    from streamlit.web.cli import main as streamlit_main

    from photosearch.app.launch import MAX_UPLOAD_MB, MULTIPART_OVERHEAD_MB

    keep_uploads_in_memory((MAX_UPLOAD_MB + MULTIPART_OVERHEAD_MB) * 2**20)
    sys.argv[0] = "streamlit"
    streamlit_main()


if __name__ == "__main__":
    main()
