"""The web app: `photosearch app` starts a Streamlit page to find every photo of a person.

- `logic`: everything the page does, without Streamlit (testable on its own); a package with
  one module a job (config, library, matching, references, session, results, people, indexing).
- `page`: the thin Streamlit script (layout and widgets only).
- `launch`: the `photosearch app` command, which runs `streamlit run page.py`.

Nothing heavy is imported here: `photosearch --help` must stay fast.
"""
