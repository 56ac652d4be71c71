"""``python -m bertdetr ...``: the ``bertdetr`` command without its script (a cluster's module
system, a venv whose bin/ is not on PATH)."""

import sys

from bertdetr.cli import main

if __name__ == "__main__":
    sys.exit(main())
