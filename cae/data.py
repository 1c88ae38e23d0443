"""The data command line: which MNIST source the app uses, and how full MNIST gets into the data folder.

    python -m cae.data                  say which source is in use and how many digits
    python -m cae.data import DIR       copy the four original .gz files from DIR (md5-checked) and unpack them
    python -m cae.data download         torchvision's real download (needs network)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cae.engine.data import DataError, data_dir, download_mnist, import_mnist, load_mnist


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cae.data", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    imp = sub.add_parser("import", help="copy MNIST's four .gz files from a folder into the data folder")
    imp.add_argument("source", type=Path)
    sub.add_parser("download", help="download MNIST with torchvision (needs network)")
    args = parser.parse_args(argv)
    try:
        if args.command == "import":
            data = import_mnist(args.source)
        elif args.command == "download":
            data = download_mnist()
        else:
            data = load_mnist()
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{data_dir()}: {data.describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
