"""The remote mode: the same commands against a running xmsearch API (XMSEARCH_API_URL, with
XMSEARCH_API_KEY), for when the API process owns the store (an embedded `serve`) or runs elsewhere.

`ApiClient` speaks HTTP (httpx, the `client` extra): the API's error bodies become the one-line errors
of xmsearch (a service that did not answer, or a 429/5xx, is a TransientError: exit code 4). `Remote`
is the Ingestor's backend over it: a stream of records is posted in batches, each a job of the
server, and followed as one job of this process whose counts are the sum of theirs.
"""

from __future__ import annotations

import json
import urllib.parse
import uuid
from collections.abc import Callable, Iterable
from typing import Any, Literal

from xmsearch.ingest.documents import Document, Reject
from xmsearch.ingest.job import COUNTS, JobStatus
from xmsearch.retriever.errors import PermanentError, TransientError
from xmsearch.settings import ClientSettings

BATCH_DOCUMENTS = 100  # documents per POST /documents (the server's default limit is 1,000)
BATCH_BYTES = 1_000_000  # JSON bytes per POST /documents (the server's default limit is 10 MiB)
RETRY_LATER = (429, 502, 503, 504)


class ApiError(PermanentError):
    """The API refused a request; the message is its own, with its status and code."""

    def __init__(self, status: int, code: str, message: str, details: list[dict[str, str]]) -> None:
        super().__init__(f"the API answered {status} {code}: {message}")
        self.status, self.code, self.details = status, code, details


class ApiUnavailableError(TransientError):
    """The API did not answer, or answered that it is busy (retry later)."""


class ApiClient:
    """JSON calls to one xmsearch API with one key."""

    def __init__(self, url: str, key: str | None, timeout: float = 120.0) -> None:
        try:
            import httpx
        except ImportError as exc:
            raise PermanentError(
                "talking to an API (--url, XMSEARCH_API_URL) needs: pip install 'xmsearch[client]'"
            ) from exc
        self.url = url.rstrip("/")
        self._httpx = httpx
        self.http = httpx.Client(base_url=self.url, headers={"X-API-Key": key} if key else {}, timeout=timeout)

    def call(self, method: str, path: str, **options: Any) -> Any:
        """The answer's JSON; ApiUnavailableError when it did not answer or is busy, ApiError else."""
        try:
            response = self.http.request(method, path, **options)
        except self._httpx.TransportError as exc:
            raise ApiUnavailableError(f"the API at {self.url} did not answer ({type(exc).__name__}: {exc})") from exc
        if response.is_success:
            return response.json()
        try:
            error = response.json()["error"]
            code, message, details = error["code"], error["message"], error.get("details") or []
        except (ValueError, KeyError, TypeError):
            code, message, details = "error", response.text[:200] or response.reason_phrase, []
        if response.status_code in RETRY_LATER:
            raise ApiUnavailableError(f"the API at {self.url} answered {response.status_code} {code}: {message}")
        raise ApiError(response.status_code, code, message, details)

    @classmethod
    def once(cls, settings: ClientSettings, method: str, path: str, **options: Any) -> Any:
        """One call to the API the settings name, on a client opened and closed for it."""
        client = cls.from_settings(settings)
        try:
            return client.call(method, path, **options)
        finally:
            client.close()

    @classmethod
    def from_settings(cls, settings: ClientSettings) -> ApiClient:
        if not settings.api_url:
            raise PermanentError("no API to talk to: give --url or set XMSEARCH_API_URL")
        return cls(settings.api_url, settings.api_key.get_secret_value() if settings.api_key else None)

    def close(self) -> None:
        self.http.close()


class Remote:
    """The Ingestor's backend against an API: jobs are the server's, followed from here."""

    mode: Literal["remote"] = "remote"
    writer: None = None
    broker: None = None

    def __init__(self, client: ApiClient) -> None:
        self.client = client
        self._groups: dict[str, dict[str, Any]] = {}  # a job of this process: the server's jobs it sent

    def submit(
        self, records: Iterable[Document | Reject], source: str, tenant: str | None, on_reject: Callable[[Reject], None]
    ) -> str:
        group: dict[str, Any] = {"jobs": [], "rejected": 0, "source": source, "tenant": tenant}
        batch: list[tuple[Document, dict[str, Any]]] = []
        size = 0
        for record in records:
            if isinstance(record, Reject):
                group["rejected"] += 1
                on_reject(record)
                continue
            body = record.model_dump(mode="json", exclude_none=True)
            length = len(json.dumps(body, ensure_ascii=False).encode())
            if batch and (len(batch) == BATCH_DOCUMENTS or size + length > BATCH_BYTES):
                self._post(batch, group, on_reject)
                batch, size = [], 0
            batch.append((record, body))
            size += length + 1
        if batch:
            self._post(batch, group, on_reject)
        return self._open(group)

    def _post(
        self, batch: list[tuple[Document, dict[str, Any]]], group: dict[str, Any], on_reject: Callable[[Reject], None]
    ) -> None:
        """One job of the server; documents it refuses (stricter limits there) are rejected here and
        the others sent again."""
        while batch:
            try:
                body = {"documents": [payload for _, payload in batch]}
                group["jobs"].append(self.client.call("POST", "/documents", json=body)["id"])
                return
            except ApiError as exc:
                refused = {int(d["location"].split()[-1]): d["reason"] for d in exc.details if "location" in d}
                if exc.code != "invalid_documents" or not refused:
                    raise
                for i, reason in refused.items():
                    doc = batch[i][0]
                    group["rejected"] += 1
                    on_reject(Reject(group["source"], f"document {doc.id!r}", reason, doc.text[:200]))
                batch = [doc for i, doc in enumerate(batch) if i not in refused]

    def delete(self, document_ids: list[str], tenant: str | None) -> str:
        group: dict[str, Any] = {"jobs": [], "rejected": 0, "source": "delete", "tenant": tenant}
        params = {} if tenant is None else {"tenant": tenant}
        for doc in document_ids:
            path = f"/documents/{urllib.parse.quote(doc, safe='')}"  # slashes and line breaks included
            group["jobs"].append(self.client.call("DELETE", path, params=params)["id"])
        return self._open(group)

    def _open(self, group: dict[str, Any]) -> str:
        job_id = f"remote-{uuid.uuid4().hex}"
        self._groups[job_id] = group
        return job_id

    def job(self, job_id: str) -> dict[str, Any] | None:
        group = self._groups.get(job_id)
        if group is None:  # a job of the server, by its own id
            try:
                job: dict[str, Any] = self.client.call("GET", f"/jobs/{job_id}")
            except ApiError as exc:
                if exc.status == 404:
                    return None
                raise
            return job
        jobs = [self.client.call("GET", f"/jobs/{server_id}") for server_id in group["jobs"]]
        return _summed(job_id, group, jobs)

    def recent(self, limit: int) -> list[dict[str, Any]]:
        jobs: list[dict[str, Any]] = self.client.call("GET", "/jobs", params={"limit": min(limit, 100)})["jobs"]
        return jobs

    def depth(self) -> int:
        return 0  # the server's queue is the server's: /metrics shows it

    def checks(self) -> dict[str, str]:
        try:
            ready = self.client.call("GET", "/ready")
        except (ApiError, ApiUnavailableError) as exc:
            return {"api": str(exc)}
        return {"api": "ok" if ready.get("ready") else f"not ready: {ready.get('checks')}"}

    def close(self) -> None:
        self.client.close()


def _summed(job_id: str, group: dict[str, Any], jobs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several jobs of the server as one: counts added, the least advanced status, their errors."""
    statuses = [JobStatus(j["status"]) for j in jobs]
    if any(s == JobStatus.FAILED for s in statuses):
        status = JobStatus.FAILED
    elif all(s.finished for s in statuses):
        status = JobStatus.DONE
    else:
        status = JobStatus.RUNNING if any(s != JobStatus.QUEUED for s in statuses) else JobStatus.QUEUED
    summed: dict[str, Any] = {"id": job_id, "status": str(status), "source": group["source"], "tenant": group["tenant"]}
    for name in COUNTS:
        summed[name] = sum(j.get(name) or 0 for j in jobs)
    summed["rejected"] += group["rejected"]
    summed["errors"] = [e for j in jobs for e in j.get("errors") or []]
    summed["server_jobs"] = list(group["jobs"])
    return summed
