"""`python -m laimco`: the same command line as `laimco`."""

from laimco.cli import main

main()
