"""`python -m dataloaders.synthetic`: write a synthetic dataset (flags: generator.build_parser)."""

import sys

from dataloaders.synthetic.generator import main

if __name__ == "__main__":
    sys.exit(main())
