"""Built-in plugins: each module is a plugin, registered exactly like a third-party one."""

DEFAULT_PLUGINS: tuple[str, ...] = (
    "raykernel.plugins.sessions",
    "raykernel.plugins.execution",
    "raykernel.plugins.dependencies",
    "raykernel.plugins.scripts",
    "raykernel.plugins.health",
    "raykernel.plugins.files",
    "raykernel.plugins.variables",
    "raykernel.plugins.snapshots",
    "raykernel.plugins.variants",
    "raykernel.plugins.introspection",
    "raykernel.plugins.notebooks",
    "raykernel.plugins.datasets",
    "raykernel.plugins.codemode",
    "raykernel.plugins.resources",
    "raykernel.plugins.prompts",
    "raykernel.plugins.toolsets",
)
