"""Datasets: SQL over the workspace's CSV, Parquet and JSON files through DuckDB, in the
session's kernel, so that "what is in these 4 GB of CSVs" needs no DataFrame.

Each tool ships a function into the session's kernel (``app.sessions.call_function``): the files
are read there, under the session's confinement and as its owner, on the session's node. The
kernel keeps one DuckDB connection as the builtin ``datasets`` (as it keeps ``display``): the
session's code queries the same views (``datasets.sql("SELECT ...").df()``), and they last as
long as the kernel does, like its variables (a restart or a resumed session starts with none).
A dataset is a view; what it was made from is kept as the view's comment.

Before any view exists the connection is locked down: files only under the workspace, no
extension installed or loaded, and the configuration locked so that SQL cannot undo it (the
kernel's Landlock rules stand behind it). DuckDB is optional (``pip install
raykernel[datasets]``): without it in the kernel the tools answer ``MissingDependency``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any

from fastmcp.dependencies import Depends
from pydantic import AfterValidator, Field, WithJsonSchema

from raykernel.api import (
    App,
    FileNotFound,
    FunctionFailed,
    InvalidArgument,
    MissingDependency,
    NotFound,
    OptionalSessionId,
    Workspace,
    WorkspacePath,
    current_app,
    hints,
    hookimpl,
)

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
OUTPUT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
# A file's format by its last suffix once a compression suffix is set aside (DuckDB reads
# compressed CSV and JSON by itself).
FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".json": "json",
    ".jsonl": "json",
    ".ndjson": "json",
}
COMPRESSIONS = (".gz", ".zst")
READERS = {"csv": "read_csv", "parquet": "read_parquet", "json": "read_json"}
MAX_FILES = 10_000
MAX_CELL_CHARS = 500
PREVIEW_BYTES = 1_000_000
FIRST_ROWS = 5
# The errors a kernel function raises on purpose, given back to the client with their kind.
INSTALL_HINT = (
    "the datasets tools need DuckDB in the session's kernel: pip install raykernel[datasets] "
    "where the server runs (or install_dependencies duckdb in this session)"
)


def _dataset_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise InvalidArgument(
            f"invalid dataset name {name!r}: a SQL identifier (letters, digits, '_'; "
            "not starting with a digit; at most 63)"
        )
    return name


def _output_name(name: str | None) -> str | None:
    if name is None:
        return None
    stem = name.removesuffix(".parquet")
    if not OUTPUT.fullmatch(stem):
        raise InvalidArgument(
            f"invalid output name {name!r}: a file name (letters, digits, '_', '.', '-')"
        )
    return stem


DatasetName = Annotated[
    str,
    AfterValidator(_dataset_name),
    Field(description="A SQL identifier: the view's name in queries.", max_length=63),
]
Paths = Annotated[
    list[WorkspacePath],
    Field(
        description="Files or globs ('data/*.csv', 'logs/**/*.parquet') of one format: CSV, "
        "Parquet or JSON.",
        min_length=1,
        max_length=100,
    ),
]
Sql = Annotated[str, Field(description="DuckDB SQL; datasets are views.", max_length=100_000)]
MaxRows = Annotated[int, Field(ge=0, le=1000, description="Rows in the reply's preview.")]
Output = Annotated[
    str | None,
    AfterValidator(_output_name),
    Field(max_length=108),
    # Omitted means no file: the schema need not say null.
    WithJsonSchema(
        {
            "type": "string",
            "maxLength": 108,
            "description": "Write the whole result to outputs/<output>.parquet.",
        }
    ),
]


# -- in the kernel ------------------------------------------------------------------------------
# These run in the session's kernel, shipped by value: they import only what the kernel has
# (DuckDB, raykernel's light modules), and they keep nothing in this module's globals (a copy
# arrives with every call): the connection is the kernel's builtin.


def _connection() -> Any:
    """The kernel's DuckDB connection, made and locked down on first use."""
    import builtins
    import os
    import resource
    import tempfile
    from pathlib import Path

    try:
        import duckdb
    except ImportError:
        raise ModuleNotFoundError("No module named 'duckdb'", name="duckdb") from None

    existing = getattr(builtins, "datasets", None)
    if isinstance(existing, duckdb.DuckDBPyConnection):
        try:
            _run(existing, "SELECT 1")
            return existing
        except duckdb.ConnectionException:  # the session's code closed it
            pass
    config: dict[str, Any] = {
        # DuckDB would fetch an extension from the network the first time SQL needs one.
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        # Spills go to the kernel's own temp folder, not '.tmp' in the workspace.
        "temp_directory": os.path.join(tempfile.gettempdir(), "duckdb"),
    }
    heap, _ = resource.getrlimit(resource.RLIMIT_DATA)
    if heap != resource.RLIM_INFINITY:
        # Past the session's heap limit DuckDB would fail to allocate; under half of it, it
        # spills instead and leaves room for the session's own objects.
        config["memory_limit"] = f"{heap // 2 >> 20}MB"
    con = duckdb.connect(":memory:", config=config)
    # DuckDB refuses allowed_directories once external access is off, so in this order; the
    # lock makes every later SET (enable_external_access, allowed_directories...) an error.
    _run(con, "SET allowed_directories = ?", [[str(Path.cwd().resolve()) + os.sep]])
    _run(con, "SET enable_external_access = false")
    _run(con, "SET lock_configuration = true")
    builtins.datasets = con
    return con


def _run(con: Any, sql: str, params: Any = None) -> list[Any]:
    """A statement's rows, all fetched: DuckDB 2 keeps an unfetched result open on the
    connection, and the session's next statement on it would be refused."""
    return con.execute(sql, params).fetchall()


def _sql_failed(exc: Exception) -> InvalidArgument:
    return InvalidArgument(f"DuckDB: {exc}")


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _format_of(path: str) -> str | None:
    lowered = path.lower()
    for compression in COMPRESSIONS:
        lowered = lowered.removesuffix(compression)
    dot = lowered.rfind(".")
    return FORMATS.get(lowered[dot:]) if dot >= 0 else None


def _files(patterns: list[str]) -> tuple[list[str], str]:
    """The workspace files ``patterns`` match (absolute, in order, each once) and their one
    format; refused outside the workspace (a symlink out included) or when nothing matches."""
    import glob
    from pathlib import Path

    workspace = Workspace(Path.cwd())  # the kernel works in its owner's workspace
    files: dict[str, None] = {}
    for pattern in patterns:
        resolved = workspace.resolve(pattern)
        if resolved.is_dir():
            raise InvalidArgument(f"{pattern!r} is a folder: name its files, e.g. 'data/*.csv'")
        matches = sorted(glob.glob(str(resolved), recursive=True))
        if not matches and resolved.is_file():  # a literal name with glob characters
            matches = [str(resolved)]
        found = [str(workspace.resolve(m)) for m in matches if Path(m).is_file()]
        if not found:
            raise FileNotFound(f"{pattern!r} matches no file in the workspace")
        files.update(dict.fromkeys(found))
    if len(files) > MAX_FILES:
        raise InvalidArgument(f"the paths match {len(files)} files, more than {MAX_FILES}")
    formats = {_format_of(f) for f in files}
    if None in formats:
        odd = next(f for f in files if _format_of(f) is None)
        raise InvalidArgument(
            f"{workspace.relative(Path(odd))!r}: not a file DuckDB reads here "
            f"({', '.join(sorted(FORMATS))}, optionally {' or '.join(COMPRESSIONS)})"
        )
    if len(formats) > 1:
        raise InvalidArgument(
            f"the files mix formats ({', '.join(sorted(formats))}): one per dataset"
        )
    return list(files), formats.pop()


def _cell(value: Any) -> Any:
    """A DuckDB value as JSON data: numbers and text as they are (long text cut), dates and
    times in ISO format, decimals as numbers, nested values cell by cell, the rest as text."""
    import datetime
    import decimal

    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return value if len(value) <= MAX_CELL_CHARS else value[:MAX_CELL_CHARS] + "…"
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_cell(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _cell(v) for k, v in value.items()}
    return _cell(str(value))


def _columns(relation: Any) -> list[dict[str, str]]:
    return [
        {"name": name, "type": str(kind)}
        for name, kind in zip(relation.columns, relation.types, strict=True)
    ]


def _catalog(con: Any) -> dict[str, tuple[str, dict[str, Any]]]:
    """Every view and table of the connection: its kind and what it was made from (a view the
    session's own SQL made has no record)."""
    import json

    rows = _run(
        con,
        "SELECT view_name, 'view', comment FROM duckdb_views() "
        "WHERE NOT internal AND database_name = 'memory' AND schema_name = 'main' "
        "UNION ALL SELECT table_name, 'table', comment FROM duckdb_tables() "
        "WHERE database_name = 'memory' AND schema_name = 'main' ORDER BY 1",
    )
    catalog = {}
    for name, kind, comment in rows:
        try:
            record = json.loads(comment) if comment else {}
        except ValueError:
            record = {}
        catalog[name] = (kind, record if isinstance(record, dict) else {})
    return catalog


def _known(con: Any, name: str) -> tuple[str, dict[str, Any]]:
    catalog = _catalog(con)
    # DuckDB's names are case-insensitive.
    found = next((key for key in catalog if key.lower() == name.lower()), None)
    if found is None:
        raise NotFound(f"no dataset named {name!r} in this session; see list_datasets")
    return catalog[found]


def kernel_register(namespace: Mapping[str, Any], name: str, patterns: list[str]) -> dict:
    import json
    from pathlib import Path

    import duckdb

    con = _connection()
    files, form = _files(patterns)
    workspace = Workspace(Path.cwd())
    view = _ident(name)
    listing = ", ".join(_literal(f) for f in files)
    record = {
        "format": form,
        "paths": list(patterns),
        "files": [workspace.relative(Path(f)) for f in files],
    }
    # Files whose columns differ are matched by name; it costs a pass over every file's
    # header per query, so only when there are several.
    merge = ", union_by_name = true" if len(files) > 1 else ""
    try:
        _run(
            con,
            f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM {READERS[form]}([{listing}]{merge})",
        )
        # Binding reads each file's header now, so a file DuckDB cannot read is said here.
        columns = _columns(con.sql(f"SELECT * FROM {view}"))
        _run(con, f"COMMENT ON VIEW {view} IS {_literal(json.dumps(record))}")
    except duckdb.Error as exc:
        _run(con, f"DROP VIEW IF EXISTS {view}")
        raise _sql_failed(exc) from None
    return {"name": name, "format": form, "files": len(files), "columns": columns}


def kernel_list(namespace: Mapping[str, Any]) -> dict:
    con = _connection()
    datasets = []
    for name, (kind, record) in _catalog(con).items():
        entry: dict[str, Any] = {"name": name, "kind": kind}
        if record:
            entry.update(format=record.get("format"), paths=record.get("paths"))
            entry["files"] = len(record.get("files") or [])
        else:
            entry["made_by"] = "SQL"
        datasets.append(entry)
    return {"datasets": datasets, "total": len(datasets)}


def kernel_describe(namespace: Mapping[str, Any], name: str) -> dict:
    import duckdb

    con = _connection()
    kind, record = _known(con, name)
    table = _ident(name)
    try:
        relation = con.sql(f"SELECT * FROM {table}")
        count = _run(con, f"SELECT count(*) FROM {table}")[0][0]
        first = relation.limit(FIRST_ROWS).fetchall()
    except duckdb.Error as exc:
        raise _sql_failed(exc) from None
    reply: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "columns": _columns(relation),
        "row_count": count,
        "first_rows": [[_cell(v) for v in row] for row in first],
    }
    if record:
        reply.update(format=record.get("format"), paths=record.get("paths"))
        files = record.get("files") or []
        reply["files"] = files[:100]
        reply["file_count"] = len(files)
    return reply


def kernel_query(namespace: Mapping[str, Any], sql: str, max_rows: int, output: str | None) -> dict:
    from pathlib import Path

    import duckdb

    con = _connection()
    reply: dict[str, Any] = {}
    try:
        relation = con.sql(sql)
        if relation is None:  # a statement without rows (DuckDB ran it)
            if output is not None:
                raise InvalidArgument("output: the SQL returns no rows to write")
            return {"columns": [], "rows": [], "more": False}
        if output is not None:
            (Path.cwd() / "outputs").mkdir(exist_ok=True)
            target = Workspace(Path.cwd()).resolve(f"outputs/{output}.parquet")
            relation.write_parquet(str(target))
            # The preview comes from the file: the query runs once.
            relation = con.read_parquet(str(target))
            reply["output"] = f"outputs/{target.name}"
            reply["row_count"] = relation.aggregate("count(*)").fetchall()[0][0]
        rows = relation.limit(max_rows + 1).fetchall()
    except duckdb.Error as exc:
        raise _sql_failed(exc) from None
    reply.update(
        columns=_columns(relation),
        rows=[[_cell(v) for v in row] for row in rows[:max_rows]],
        more=len(rows) > max_rows,
    )
    return reply


def kernel_drop(namespace: Mapping[str, Any], name: str) -> dict:
    con = _connection()
    kind, _record = _known(con, name)
    _run(con, f"DROP {'VIEW' if kind == 'view' else 'TABLE'} {_ident(name)}")
    return {"dropped": name, "kind": kind}


# -- in the front end ---------------------------------------------------------------------------


async def _in_kernel(app: App, session_id: str | None, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn`` in the session's kernel; what it refused on purpose comes back with its kind."""
    try:
        return await app.sessions.call_function(
            session_id, fn, *args, timeout=app.timeout_for(None), max_result_bytes=PREVIEW_BYTES
        )
    except FunctionFailed as exc:
        if exc.ename == "ModuleNotFoundError" and "duckdb" in exc.evalue:
            raise MissingDependency(INSTALL_HINT) from None
        if exc.ename == "ResultTooLarge":
            raise InvalidArgument(
                f"the reply would be above {PREVIEW_BYTES} bytes: ask for fewer rows or "
                "columns (or write the result with output)"
            ) from None
        raise


async def register_dataset(
    name: DatasetName,
    paths: Paths,
    session_id: OptionalSessionId = None,
    app: App = Depends(current_app),
) -> dict[str, Any]:
    """Make workspace files a dataset: a DuckDB view named `name` for query_datasets (and for
    the session's code: `datasets.sql(...)`). Replaces a dataset of that name."""
    return await _in_kernel(app, session_id, kernel_register, name, list(paths))


async def list_datasets(
    session_id: OptionalSessionId = None, app: App = Depends(current_app)
) -> dict[str, Any]:
    """The session's datasets (and tables or views its SQL made)."""
    return await _in_kernel(app, session_id, kernel_list)


async def describe_dataset(
    name: DatasetName, session_id: OptionalSessionId = None, app: App = Depends(current_app)
) -> dict[str, Any]:
    """A dataset's columns and types, row count, first rows and files."""
    return await _in_kernel(app, session_id, kernel_describe, name)


async def query_datasets(
    sql: Sql,
    max_rows: MaxRows = 50,
    output: Output = None,
    session_id: OptionalSessionId = None,
    app: App = Depends(current_app),
) -> dict[str, Any]:
    """Run DuckDB SQL over the session's datasets (workspace files only, no network): the
    first rows, and with `output` the whole result as a Parquet file in outputs/."""
    return await _in_kernel(app, session_id, kernel_query, sql, max_rows, output)


async def drop_dataset(
    name: DatasetName, session_id: OptionalSessionId = None, app: App = Depends(current_app)
) -> dict[str, Any]:
    """Forget a dataset (its files stay)."""
    return await _in_kernel(app, session_id, kernel_drop, name)


@hookimpl
def register_tools(register: Callable[..., Any]) -> None:
    register(
        register_dataset,
        title="Register a dataset",
        annotations=hints(read_only=False, destructive=True, idempotent=True),
        toolset="datasets",
    )
    register(
        list_datasets,
        title="List datasets",
        annotations=hints(read_only=True),
        toolset="datasets",
    )
    register(
        describe_dataset,
        title="Describe a dataset",
        annotations=hints(read_only=True),
        toolset="datasets",
    )
    register(
        query_datasets,
        title="Query datasets with SQL",
        annotations=hints(read_only=False, destructive=True),
        toolset="datasets",
    )
    register(
        drop_dataset,
        title="Drop a dataset",
        annotations=hints(read_only=False, destructive=True, idempotent=True),
        toolset="datasets",
    )
