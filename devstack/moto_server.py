"""moto's server, as the local stack runs it: with the transaction patch (devstack/moto_patch.py).

    python -m devstack.moto_server -H 127.0.0.1 -p 5055

Exits when the process that started it goes away, so a killed stack never leaves it behind.
"""

from __future__ import annotations

import os
import sys
import threading
import time


def _exit_with_parent() -> None:
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)


def main(argv: list[str] | None = None) -> None:
    from devstack import moto_patch

    moto_patch.apply()
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    from moto.server import main as moto_main

    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
