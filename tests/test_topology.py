"""The compose file's topology on this machine without containers: a Qdrant server (the REST
stand-in of tests/qdrant_standin.py, as no server can run here), a private Redis with an append-only
file, two API processes, a worker and the intake, each started with the command its compose service
runs and the settings it sets; documents go in through the API and the Redis Stream, the workers
index them into the server, and both APIs find them; the health checks are the compose file's."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from pathlib import Path

import httpx
import redis
import yaml

from tests.conftest import ROOT
from tests.helpers import CLI, RedisServer, Worker, free_port, started, wait_until

COMPOSE = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())


def _command(service: str) -> list[str]:
    """The command a compose service runs, with this checkout's `xmsearch`."""
    command = COMPOSE["services"][service]["command"]
    assert command[0] == "xmsearch"
    return [*CLI, *command[1:]]


def _healthy(service: str, port: int) -> bool:
    """The compose service's own health check (`xmsearch probe URL`) against this machine's port."""
    test = COMPOSE["services"][service]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "xmsearch", "probe"]
    url = test[3].replace(test[3].split("/")[2], f"127.0.0.1:{port}")
    return subprocess.run([*CLI, "probe", url], capture_output=True, timeout=60, cwd=ROOT).returncode == 0


def test_the_compose_topology_ingests_and_searches_across_processes(
    qdrant_server: str, redis_server: RedisServer, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    key = json.loads(subprocess.run([*CLI, "api-key", "--json"], capture_output=True, text=True, cwd=ROOT).stdout)
    compose_env = COMPOSE["x-xmsearch"]["environment"]
    assert {"XMSEARCH_BROKER_URL", "XMSEARCH_QDRANT_URL", "XMSEARCH_QDRANT_API_KEY"} <= compose_env.keys()
    metrics_port = free_port()
    env = {
        **os.environ,
        "XMSEARCH_BROKER_URL": redis_server.url,  # compose: redis://redis:6379/0
        "XMSEARCH_QDRANT_URL": qdrant_server,  # compose: http://qdrant:6333
        "XMSEARCH_MODEL": str(tiny_checkpoint),
        "XMSEARCH_API_KEYS": json.dumps([key["entry"]]),
        "XMSEARCH_DATA_DIR": str(tmp_path / "data"),
        "XMSEARCH_DEVICE": "cpu",
        "XMSEARCH_LOG_FORMAT": "json",
        "XMSEARCH_WORKER_METRICS_PORT": str(metrics_port),
    }
    ports = [free_port(), free_port()]
    with contextlib.ExitStack() as running:
        for i, port in enumerate(ports):  # two API replicas on one server: any number of processes search
            api_env = {**env, "XMSEARCH_API_PORT": str(port)}
            running.enter_context(started(_command("api"), api_env, tmp_path / f"api{i}.log"))
        worker = Worker(env, tmp_path / "worker.log", *_command("worker")[len(CLI) + 1 :])  # Worker adds "worker"
        running.callback(worker.stop)
        running.enter_context(started(_command("intake"), env, tmp_path / "intake.log"))
        for i, port in enumerate(ports):
            wait_until(f"api {i} healthy", lambda port=port: _healthy("api", port), tmp_path / f"api{i}.log")
        assert _healthy("worker", metrics_port)
        headers = {"X-API-Key": key["key"]}
        first = f"http://127.0.0.1:{ports[0]}"
        documents = [
            {"id": "mill", "text": "The old water mill by the river still grinds flour.", "language": "en"},
            {"id": "passport", "text": "Renew your passport before travelling abroad.", "language": "en"},
            {"id": "velo", "text": "Le vélo est le meilleur moyen de traverser la ville.", "language": "fr"},
        ]
        posted = httpx.post(f"{first}/documents", json={"documents": documents}, headers=headers, timeout=60)
        assert posted.status_code == 202, posted.text
        job = posted.json()["id"]
        wait_until(
            "the job done",
            lambda: httpx.get(f"{first}/jobs/{job}", headers=headers, timeout=30).json()["status"] == "done",
            tmp_path / "worker.log",
        )
        pushed = {"id": "bridge", "text": "A stone bridge crosses the river near the mill.", "language": "en"}
        redis.Redis.from_url(redis_server.url).xadd("xmsearch:intake", {"document": json.dumps(pushed)})
        for i, port in enumerate(ports):  # both replicas see every document the worker wrote to the server

            def found(port: int = port) -> bool:
                answer = httpx.post(
                    f"http://127.0.0.1:{port}/search",
                    json={"query": "river mill", "k": 4, "language": "en"},
                    headers=headers,
                    timeout=60,
                )
                return {h["document_id"] for h in answer.json()["hits"]} == {"mill", "passport", "velo", "bridge"}

            wait_until(f"every document found through api {i}", found, tmp_path / "intake.log")
        scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        assert 'xmsearch_tasks_total{outcome="succeeded",task="xmsearch.index"}' in scraped
        status = httpx.get(f"{first}/status", headers=headers, timeout=30).json()
        assert status["backend"] == "server" and status["documents"] == 4
