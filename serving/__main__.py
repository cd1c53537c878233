"""``python -m serving [--port 3000] [--host 127.0.0.1] [--workers 1]``: start the ranking server."""

from __future__ import annotations

import argparse

from serving.launch import DEFAULT_HOST, DEFAULT_PORT, exec_server


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m serving", description=__doc__)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--host", default=DEFAULT_HOST, help="Loopback by default.")
    parser.add_argument("--workers", type=int, default=None, help="Server worker processes.")
    args = parser.parse_args()
    exec_server(port=args.port, host=args.host, workers=args.workers)


if __name__ == "__main__":
    main()
