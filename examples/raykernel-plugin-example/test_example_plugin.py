"""The example plugin's own test, with raykernel's pytest fixtures: real server, real client."""

import pytest
import raykernel_example_plugin


@pytest.fixture
def raykernel_plugins():
    return [raykernel_example_plugin]


async def test_dataframe_summary_runs_in_the_callers_session(raykernel_client, tmp_path):
    call = raykernel_client.call_tool
    (tmp_path / "t.csv").write_text("a,b\n1,x\n2,y\n")
    await call("run_python_code", {"code": "import pandas\ndf = pandas.DataFrame()"})
    summary = (await call("dataframe_summary", {"path": "t.csv"})).data
    assert summary["shape"] == [2, 2] and summary["dtypes"]["a"] == "int64"
    assert summary["frames_in_session"] == ["df"]
    # The summary left no trace in the user's timeline: the next run is the second.
    after = (await call("run_python_code", {"code": "len(df)"})).structured_content
    assert after["execution_count"] == 2
