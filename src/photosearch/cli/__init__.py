"""The `photosearch` command line: a thin shell over the library.

main.py is the command group and registers the others; each command module parses options and
prints, and the work happens in the library. Heavy modules are imported inside the commands, so
`photosearch --help` stays fast.
"""
