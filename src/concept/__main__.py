"""`python -m concept ...`: the same as the `concept` command."""

import sys

from concept.cli import main

if __name__ == "__main__":
    sys.exit(main())
