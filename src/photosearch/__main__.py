"""`python -m photosearch`: the same command line as `photosearch`."""

from photosearch.cli.main import main

main(prog_name="photosearch")
