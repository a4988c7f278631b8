"""run_variants: fork a session per variant, run them all at once, compare the results."""

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastmcp.dependencies import Depends
from pydantic import Field

from raykernel.api import App, OptionalSessionId, current_app, hints, hookimpl

Variant = Annotated[str, Field(min_length=1, max_length=1_000_000)]
Name = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=200)]


async def run_variants(
    variants: Annotated[
        list[Variant],
        Field(
            description="Code for each variant, run in its own fork of the session.",
            min_length=1,
            max_length=16,
        ),
    ],
    session_id: OptionalSessionId = None,
    compare: Annotated[
        list[Name], Field(description="Variables whose values to show side by side.")
    ] = [],  # noqa: B006 - pydantic copies defaults
    keep: Annotated[
        Literal["none", "best", "all"],
        Field(description="Which forks to keep afterwards ('best': by best_by)."),
    ] = "none",
    best_by: Annotated[
        Name | None, Field(description="With keep 'best': the compare name to rank by.")
    ] = None,
    goal: Annotated[
        Literal["max", "min"], Field(description="With keep 'best': higher or lower is better.")
    ] = "max",
    timeout: Annotated[
        float | None, Field(gt=0, description="Seconds each variant may run (default timeout).")
    ] = None,
    fork: Annotated[
        Literal["auto", "copy"],
        Field(
            description="'copy': each variant in a new session holding a copy of the state, "
            "spread over the cluster's nodes (slower to start)."
        ),
    ] = "auto",
    app: App = Depends(current_app),
) -> dict[str, Any]:
    """Try several variants from one starting point in a single call: the session is forked
    once per variant (its process forked copy-on-write when it is idle, else its variables
    copied), every variant runs at the same time in its own fork, and the reply gives each
    run's result and, for the names in `compare`, each variant's value side by side. The
    forks are gone afterwards unless keep says otherwise. The session itself is not
    changed."""
    return await app.variants.run(
        app.resolve_session(session_id),
        list(variants),
        app.timeout_for(timeout),
        list(compare),
        keep,
        best_by,
        goal,
        fork,
    )


@hookimpl
def register_tools(register: Callable[..., Any]) -> None:
    register(
        run_variants,
        title="Run variants side by side",
        annotations=hints(read_only=False, open_world=True),
        toolset="state",
    )
