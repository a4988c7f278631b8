"""MCP prompts that set up the documented workflows."""

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import Field

from raykernel.api import App, hookimpl


@hookimpl
def register_prompts(register: Callable[..., Any], app: App) -> None:
    async def analyze_csv(
        path: Annotated[str, Field(description="CSV file in the workspace, e.g. outputs/d.csv")],
        question: Annotated[str, Field(description="What to find out.")] = "Summarize it.",
    ) -> str:
        """Start an analysis session on a CSV file."""
        session = "analysis"
        return (
            f"Analyze the CSV file `{path}` with the raykernel tools. {question}\n\n"
            f"1. create_session with session_id `{session}` and a description of the task, "
            f"then switch_session to it.\n"
            f"2. run_python_code: `import pandas as pd; df = pd.read_csv({path!r}); df.info(); "
            "df.head()` (install_dependencies with ['pandas'] first if the import fails).\n"
            "3. Explore in small steps; end a cell with an expression (e.g. a DataFrame) to see "
            "it as a table, use display(...) for several objects, and plot with matplotlib: "
            "figures come back as images and are saved under outputs/.\n"
            "4. Save reusable code with save_script, and results under outputs/.\n"
            "For anything that may run longer than a minute, pass background: true and follow "
            "it with get_run."
        )

    async def parallel_experiments(
        setup: Annotated[str, Field(description="Code that prepares the shared starting point.")],
        variants: Annotated[str, Field(description="The variants to compare, one per line.")],
    ) -> str:
        """Run experiment variants side by side, from one shared starting point."""
        lines = [v.strip() for v in variants.splitlines() if v.strip()]
        steps = "\n".join(
            f"   - fork_session `base` -> `exp{i}`, then run_python_code in it with "
            f"background: true for: {variant}"
            for i, variant in enumerate(lines, 1)
        )
        return (
            "Compare experiment variants in parallel with raykernel sessions.\n\n"
            "1. create_session `base`, and run this setup there with run_python_code:\n"
            f"```python\n{setup}\n```\n"
            f"2. For each variant:\n{steps}\n"
            "3. Poll each run with get_run (wait: 30) until done; compare the results, and use "
            "transfer_variable to gather values into one session if needed.\n"
            "4. delete_session the experiment sessions when done."
        )

    async def debug_session(
        session_id: Annotated[str, Field(description="The session to look at.")] = "default",
    ) -> str:
        """Find out why a session misbehaves (slow, stuck, crashed, out of memory)."""
        return (
            f"Diagnose session `{session_id}` with the raykernel tools.\n"
            f"1. get_kernel_health {{session_id: {session_id!r}}}: status, memory, CPU, queue.\n"
            f"2. get_history {{session_id: {session_id!r}, last: 10}}: what ran and how it ended.\n"
            "3. If it is busy for too long: interrupt_session (variables are kept).\n"
            "4. If it is dead or keeps crashing: restart_kernel with preserve_state: true, and "
            "check not_preserved in the reply.\n"
            "5. list_variables to see what state it holds."
        )

    register(analyze_csv, title="Analyze a CSV file")
    register(parallel_experiments, title="Parallel experiments")
    register(debug_session, title="Debug a session")
