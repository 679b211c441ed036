"""The ``slipstream`` entry point (the console script and ``python -m slipstream``).

It imports only the standard library before it knows what to run: ``status`` and ``logs`` are
answered by :mod:`slipstream.cli.fast` when they can be, every other command (and those two when
the fast path steps aside) by the Typer app in :mod:`slipstream.cli.app`, imported only then.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing itself is not imported: it costs a few ms of every command's start
if TYPE_CHECKING:
    from typing import Any


def main() -> None:
    """Entry point: expected failures become one line and exit 1, never a traceback."""
    from slipstream.cli import fast

    code = fast.run(sys.argv[1:])
    if code is not None:
        sys.exit(code)
    from slipstream.cli.app import app

    app()


def __getattr__(name: str) -> Any:
    """``slipstream.cli.main.app`` still names the Typer app (imported on first use)."""
    if name == "app":
        from slipstream.cli.app import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    main()
