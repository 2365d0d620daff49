"""Command-line options of `python -m server.launch`, which up.py also parses before it installs.

Only the standard library is imported here, so that up.py can answer --help and reject a bad
option before .venv and the dependencies exist.
"""

from __future__ import annotations

import argparse

DESCRIPTION = "Bring up the whole platform on one machine and run the demo."


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    parser.add_argument("--no-demo", action="store_true", help="start the platform without running the demo")
    parser.add_argument("--demo-modules", type=int, default=None,
                        help="number of standard-library modules the demo ingests (default: all that render)")
    parser.add_argument("--demo-max-bytes", type=int, default=None,
                        help="cut each module's text to this many bytes in the demo (default 20000)")
    parser.add_argument("--demo-timeout", type=float, default=None,
                        help="seconds the demo waits for ingestion to finish (default 1800)")
    parser.add_argument("--exit-after-demo", action="store_true", help="stop the platform when the demo ends")
    return parser
