"""Progress notifications go to the calls that ask for them (a progress token), and only to them."""

from __future__ import annotations

from pathlib import Path

from helpers import Fifo, StdioServer


def test_progress_only_for_the_call_with_a_token(job_root: Path, server_cwd: Path, tmp_path: Path):
    """Two waits on the same running job, one with a progress token: only that one is sent
    progress, about once a second; both return the job's end once it comes."""
    fifo = Fifo(tmp_path / "release")
    server = StdioServer(job_root, server_cwd)
    try:
        server.initialize()
        command = f"read x < {fifo}; echo done $x"
        run = server.request(2, "tools/call", {"name": "run_job", "arguments": {"command": command, "wait_seconds": 0}})
        job_id = run["result"]["structuredContent"]["job_id"]
        wait = {"name": "wait", "arguments": {"job_id": job_id, "wait_seconds": 30}}
        server.send({"id": 3, "method": "tools/call", "params": wait})
        server.send({"id": 4, "method": "tools/call", "params": {**wait, "_meta": {"progressToken": "w"}}})

        progress = []
        while len(progress) < 2:  # the second notification comes after the first call's first second too
            message = server.receive()
            assert message.get("method") == "notifications/progress", message
            progress.append(message["params"])
        assert {p["progressToken"] for p in progress} == {"w"}

        fifo.write("go")
        replies = {}
        while len(replies) < 2:
            message = server.receive()
            if "id" in message:
                replies[message["id"]] = message["result"]["structuredContent"]
            else:
                assert message["params"]["progressToken"] == "w", message
        for payload in replies.values():
            assert payload["state"] == "exited" and payload["exit_code"] == 0
    finally:
        server.close()
