"""The workflows docs/tools.md documents (Workflows), run as written through a real client."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from fastmcp import Client

from tests.helpers import call, run


async def test_isolation_example(client: Client) -> None:
    await call(client, "create_session", session_id="wf-a")
    await call(client, "create_session", session_id="wf-b")
    await run(client, "x = 42", session_id="wf-a")
    reply = await run(client, "print('x' in globals())", session_id="wf-b")
    assert reply["stdout"] == "False\n"
    for sid in ("wf-a", "wf-b"):
        await call(client, "delete_session", session_id=sid)


async def test_multi_stage_pipeline_across_three_sessions(client: Client, workspace: Path) -> None:
    stages = {
        "ingest": (
            "import numpy as np, pandas as pd\n"
            "rng = np.random.default_rng(0)\n"
            "X = rng.normal(size=(400, 3))\n"
            "df = pd.DataFrame(X, columns=['a', 'b', 'c'])\n"
            "df['label'] = (df.a + 0.5 * df.b > 0).astype(int)\n"
            "df.to_csv('outputs/raw.csv', index=False)\n"
            "len(df)"
        ),
        "features": (
            "import pandas as pd\n"
            "df = pd.read_csv('outputs/raw.csv')\n"
            "df['ab'] = df.a * df.b\n"
            "df.to_csv('outputs/features.csv', index=False)\n"
            "list(df.columns)"
        ),
        "model": (
            "import json, pandas as pd\n"
            "from sklearn.linear_model import LogisticRegression\n"
            "from sklearn.model_selection import train_test_split\n"
            "df = pd.read_csv('outputs/features.csv')\n"
            "X, y = df.drop(columns='label'), df.label\n"
            "Xtr, Xte, ytr, yte = train_test_split(X, y, random_state=0)\n"
            "score = LogisticRegression().fit(Xtr, ytr).score(Xte, yte)\n"
            "json.dump({'accuracy': score}, open('outputs/metrics.json', 'w'))\n"
            "round(score, 2)"
        ),
    }
    for stage, code in stages.items():
        await call(client, "create_session", session_id=stage, description=f"{stage} stage")
        reply = await run(client, code, session_id=stage)
        assert reply["success"], (stage, reply["error"])
    assert json.loads((workspace / "outputs" / "metrics.json").read_text())["accuracy"] > 0.8
    model_vars = (await call(client, "list_variables", session_id="model"))["variables"]
    assert "score" in {v["name"] for v in model_vars}
    ingest_vars = (await call(client, "list_variables", session_id="ingest"))["variables"]
    assert "score" not in {v["name"] for v in ingest_vars}
    for stage in stages:
        await call(client, "delete_session", session_id=stage)


async def test_parallel_experiments_loop(client: Client) -> None:
    settings = {"exp-c01": 0.01, "exp-c1": 1.0, "exp-c100": 100.0}
    for sid in settings:
        await call(client, "create_session", session_id=sid)

    async def experiment(sid: str, c: float) -> float:
        code = (
            "from sklearn.datasets import load_iris\n"
            "from sklearn.linear_model import LogisticRegression\n"
            "X, y = load_iris(return_X_y=True)\n"
            f"LogisticRegression(C={c}, max_iter=500).fit(X, y).score(X, y)"
        )
        reply = await run(client, code, session_id=sid)
        assert reply["success"], reply["error"]
        return float(reply["result"])

    scores = await asyncio.gather(*(experiment(s, c) for s, c in settings.items()))
    assert all(0.5 < s <= 1.0 for s in scores)
    assert scores[0] < scores[2]  # weaker regularisation fits the training set better
    for sid in settings:
        await call(client, "delete_session", session_id=sid)


async def test_health_monitoring_loop(client: Client, app) -> None:
    await call(client, "create_session", session_id="monitored")
    await run(client, "import os\nos._exit(3)", session_id="monitored")  # it dies
    restarted = []
    for sid in (await call(client, "list_sessions"))["sessions"]:
        health = await call(client, "get_kernel_health", session_id=sid)
        probe = await call(client, "check_kernel_responsiveness", session_id=sid)
        if health["status"] == "dead" or not probe["responsive"]:
            await call(client, "restart_kernel", session_id=sid)
            restarted.append(sid)
    assert restarted == ["monitored"]
    assert (await call(client, "get_kernel_health", session_id="monitored"))["status"] == "healthy"
    await call(client, "delete_session", session_id="monitored")


async def test_idle_cleanup_loop(client: Client) -> None:
    await call(client, "create_session", session_id="busy-one")
    await call(client, "create_session", session_id="idle-one")
    await run(client, "1", session_id="busy-one")
    removed = []
    for sid, info in (await call(client, "list_sessions"))["sessions"].items():
        if sid != "default" and info["execution_count"] == 0:
            await call(client, "delete_session", session_id=sid)
            removed.append(sid)
    assert removed == ["idle-one"]
    remaining = (await call(client, "list_sessions"))["sessions"]
    assert "busy-one" in remaining and "idle-one" not in remaining
    await call(client, "delete_session", session_id="busy-one")


async def test_save_script_then_import_from_another_session(client: Client) -> None:
    await call(
        client,
        "save_script",
        name="analysis_utils",
        content=(
            "def summarize(values):\n"
            "    return {'n': len(values), 'mean': sum(values) / len(values)}\n"
        ),
    )
    await call(client, "create_session", session_id="consumer")
    reply = await run(
        client, "import analysis_utils\nanalysis_utils.summarize([1, 2, 3])", session_id="consumer"
    )
    assert reply["result"] == "{'n': 3, 'mean': 2.0}"
    await call(client, "delete_session", session_id="consumer")
