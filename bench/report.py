"""Print the kernel benchmark table: `python bench/report.py [--quick]`.

The same table as `python -m pyce bench` (the code lives in pyce/app/bench.py so
that the installed command line has it). For numbers worth quoting, run it on
an idle machine and, where OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are set, unset
them for this command only:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/report.py
"""
import argparse

from pyce.app.bench import report


def main():
    """Parse --quick / --dtype and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes, short timing budget")
    parser.add_argument("--dtype", choices=["float32", "float64", "both"], default="both")
    args = parser.parse_args()
    dtypes = ("float32", "float64") if args.dtype == "both" else (args.dtype,)
    report(quick=args.quick, dtypes=dtypes)


if __name__ == "__main__":
    main()
