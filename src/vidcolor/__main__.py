"""``python -m vidcolor``: the same as the ``vidcolor`` console script."""

from vidcolor.cli import main

if __name__ == "__main__":
    main()
