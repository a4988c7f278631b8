"""What the datasets toolset buys (issue 26 part 3): one command, one table.

    .venv/bin/python bench/datasets.py [--rows 1000000,10000000]

Writes (id, region, amount) with DuckDB as a CSV and a Parquet file of each size in a temporary
workspace, then times, as a client sees it (the tool call's round trip), the same aggregation
(count and sum of amount per region, 10 groups) two ways in the "default" session: through
query_datasets (DuckDB in the kernel, over a registered view), and in pandas through
run_python_code (read the file, groupby). p50 of 3 each, and pandas' time over DuckDB's. The
two answers are checked to agree. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
from fastmcp import Client

GROUP_BY = "SELECT region, count(*) AS n, sum(amount) AS total FROM {view} GROUP BY region"
PANDAS = {
    "csv": "pd.read_csv({path!r})",
    "parquet": "pd.read_parquet({path!r})",
}
PANDAS_GROUP_BY = (
    "import pandas as pd\n"
    "_g = {read}.groupby('region')['amount'].agg(['count', 'sum'])\n"
    "sorted((k, int(n), int(t)) for k, (n, t) in _g.iterrows())"
)


def write_files(folder: Path, rows: int) -> dict[str, Path]:
    files = {"csv": folder / f"sales_{rows}.csv", "parquet": folder / f"sales_{rows}.parquet"}
    table = (
        "SELECT range AS id, 'r' || (hash(range) % 10) AS region, "
        f"(hash(range * 7) % 1000)::BIGINT AS amount FROM range({rows})"
    )
    con = duckdb.connect()
    con.execute(f"COPY ({table}) TO '{files['csv']}' (HEADER)").fetchall()
    con.execute(f"COPY ({table}) TO '{files['parquet']}' (FORMAT parquet)").fetchall()
    return files


async def timed(client: Client, tool: str, arguments: dict[str, Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    reply = await client.call_tool(tool, arguments)
    return time.perf_counter() - started, reply.structured_content


async def main(sizes: list[int]) -> None:
    with tempfile.TemporaryDirectory(prefix="raykernel-datasets-") as folder:
        table = await measure(Path(folder), sizes)
    print("count and sum per region (10 groups), p50 of 3, the tool call's round trip:")
    print("| rows | file | size | query_datasets (DuckDB) | pandas in run_python_code | ratio |")
    print("| --- | --- | --- | --- | --- | --- |")
    for rows, form, size, d, p in table:
        print(
            f"| {rows:,} | {form} | {size / 1e6:.0f} MB | {d * 1000:.0f} ms | {p * 1000:.0f} ms "
            f"| {p / d:.1f}x |"
        )


async def measure(workspace: Path, sizes: list[int]) -> list[tuple[int, str, int, float, float]]:
    from raykernel.server.build import build_server
    from raykernel.settings import Settings

    files = {rows: write_files(workspace, rows) for rows in sizes}
    mcp, _app = build_server(
        Settings(workspace=workspace, config=None, toolsets=["default", "datasets"])
    )
    table = []
    async with Client(mcp) as client:
        await client.call_tool("run_python_code", {"code": "import pandas"})
        for rows, paths in files.items():
            for form, path in paths.items():
                view = f"{form}_{rows}"
                await client.call_tool("register_dataset", {"name": view, "paths": [path.name]})
                duck, panda = [], []
                for _ in range(3):
                    seconds, reply = await timed(
                        client, "query_datasets", {"sql": GROUP_BY.format(view=view)}
                    )
                    duck.append(seconds)
                    answer = sorted(tuple(row) for row in reply["rows"])
                    code = PANDAS_GROUP_BY.format(read=PANDAS[form].format(path=path.name))
                    seconds, ran = await timed(client, "run_python_code", {"code": code})
                    assert ran["success"], ran["error"]
                    panda.append(seconds)
                    assert repr([tuple(a) for a in answer]) == ran["result"], (answer, ran)
                d, p = statistics.median(duck), statistics.median(panda)
                table.append((rows, form, path.stat().st_size, d, p))
    return table


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", default="1000000,10000000")
    sizes = [int(n) for n in parser.parse_args().rows.split(",")]
    asyncio.run(main(sizes))
