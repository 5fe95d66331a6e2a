"""faust's `@app.timer` and `@app.task`, typed: faust hides both from the type checker
(`@no_type_check`), which would leave every function they decorate untyped."""

from collections.abc import Awaitable, Callable
from typing import cast

import faust

Job = Callable[[], Awaitable[None]]


def every(app: faust.App, interval_s: float) -> Callable[[Job], Job]:
    """`@app.timer(interval_s)`: the function runs every `interval_s` while the worker runs."""
    return cast(Callable[[Job], Job], app.timer(interval_s))


def once_started(app: faust.App) -> Callable[[Job], Job]:
    """`@app.task`: the function runs once, when the worker has started."""
    return cast(Callable[[Job], Job], app.task)
