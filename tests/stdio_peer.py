"""A raw line-oriented JSON-RPC peer for a stdio server: every byte the server writes to stdout
is read and checked, which a high-level client would hide."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from typing import Any

PROTOCOL = "2025-11-25"


class StdioPeer:
    def __init__(self, command: list[str], env: dict[str, str], stderr_path: str) -> None:
        self._stderr = open(stderr_path, "wb")
        self.proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, env=env
        )
        self.lines: queue.Queue[bytes] = queue.Queue()
        self.raw_stdout: list[bytes] = []
        self._next_id = 0
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.raw_stdout.append(line)
            self.lines.put(line)

    def send_raw(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def send(self, message: dict[str, Any]) -> None:
        self.send_raw(json.dumps(message).encode() + b"\n")

    def receive(self, timeout: float = 120) -> dict[str, Any]:
        return json.loads(self.lines.get(timeout=timeout))

    def request(self, method: str, params: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
        self._next_id += 1
        self.send({"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": params})
        while True:
            message = self.receive(timeout)
            if message.get("id") == self._next_id:
                return message

    def initialize(self) -> dict[str, Any]:
        reply = self.request(
            "initialize",
            {
                "protocolVersion": PROTOCOL,
                "capabilities": {},
                "clientInfo": {"name": "raw-peer", "version": "0"},
            },
        )
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return reply

    def call_tool(
        self,
        name: str,
        arguments: dict[str, Any],
        timeout: float = 120,
        progress_token: str | None = None,
    ) -> dict:
        params: dict[str, Any] = {"name": name, "arguments": arguments}
        if progress_token is not None:
            params["_meta"] = {"progressToken": progress_token}
        return self.request("tools/call", params, timeout)

    def close(self, timeout: float = 60) -> int:
        """Close stdin (the client going away) and wait for the server to exit by itself."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            return self.proc.wait(timeout)
        finally:
            self._stderr.close()
