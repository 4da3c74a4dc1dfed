"""Expected faults become one readable line, never a traceback."""
from __future__ import annotations

import sys
from typing import Callable


class MusictagError(Exception):
    """A fault the user can fix: bad input file, bad param. The message names the culprit."""


def run_main(main: Callable[[], object]) -> None:
    """Run a stage or command `main`, turning a MusictagError into `musictag: error: ...` and exit 1."""
    try:
        main()
    except MusictagError as err:
        print(f"musictag: error: {err}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("musictag: interrupted", file=sys.stderr)
        sys.exit(130)
