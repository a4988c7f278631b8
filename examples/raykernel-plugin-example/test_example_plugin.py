"""The example plugin's own test, written with raykernel's kit: real server, real MCP client."""

import raykernel_example_plugin

from raykernel.testing import serve


async def test_dataframe_summary_runs_in_the_callers_session(tmp_path):
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / "t.csv").write_text("a,b\n1,x\n2,y\n")
    async with serve(plugins=[raykernel_example_plugin], workspace=tmp_path) as client:
        await client.call_tool(
            "run_python_code", {"code": "import pandas as pd\ndf = pd.DataFrame()"}
        )
        summary = (await client.call_tool("dataframe_summary", {"path": "outputs/t.csv"})).data
        assert summary["shape"] == [2, 2] and summary["dtypes"]["a"] == "int64"
        assert summary["frames_in_session"] == ["df"]
        history = (await client.call_tool("get_history", {})).structured_content
        assert history["total"] == 1  # the summary left no trace in the user's history
