"""`faust -A app worker`: the orderstream faust app, built from settings on first use.

`app.app` is built when faust (or anyone) first asks for it, so importing
`app.settings` or `app.embedded` builds nothing.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "app":
        from app.main import create_app

        built = create_app()
        globals()["app"] = built
        return built
    raise AttributeError(f"module 'app' has no attribute {name!r}")
