"""`python -m choosemypower_dagster.refresh`: the refresh command (kept at its documented name).

The command lives in `choosemypower_dagster.cli.refresh`.
"""

import sys

from choosemypower_dagster.cli.refresh import main

if __name__ == "__main__":
    sys.exit(main())
