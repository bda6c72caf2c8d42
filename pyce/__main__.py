"""`python -m pyce` and the `pyce` console script: see pyce.app.cli."""
import sys


def main(argv=None):
    """Run the command line; return its exit status (the console script exits with it)."""
    from pyce.app.cli import main as cli_main
    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
