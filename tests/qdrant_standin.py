"""A stand-in for a Qdrant server where none can run (no server binary or container engine on these
machines): Qdrant's REST API, for the calls xmsearch makes, answered by qdrant-client's local mode
(Qdrant's own Python engine) in one process. Clients in other processes reach it over HTTP, through
qdrant-client's real REST code, as they would a server: what a topology test needs.

    python -m tests.qdrant_standin --port 6333 --path /tmp/qdrant
"""

from __future__ import annotations

import argparse
import threading
import warnings
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter
from qdrant_client import QdrantClient, models

warnings.filterwarnings("ignore", message="Payload indexes have no effect")  # a server builds them


def make_app(client: QdrantClient) -> FastAPI:
    app = FastAPI()
    engine = threading.Lock()  # local mode is not made for threads: one call at a time

    def answer(call: Callable[[], Any]) -> JSONResponse:
        try:
            with engine:
                result = call()
        except Exception as exc:  # what a server says of a bad call: its status and why
            status = 404 if "not found" in str(exc).lower() else 409 if "already exists" in str(exc) else 400
            return JSONResponse({"status": {"error": str(exc)}, "time": 0.0}, status_code=status)
        return JSONResponse({"result": jsonable_encoder(result), "status": "ok", "time": 0.0})

    async def body(request: Request, shape: Any) -> Any:
        return TypeAdapter(shape).validate_python(await request.json())

    @app.get("/collections")
    def collections() -> JSONResponse:
        return answer(client.get_collections)

    @app.get("/collections/{name}")
    def collection(name: str) -> JSONResponse:
        return answer(lambda: client.get_collection(name))

    @app.get("/collections/{name}/exists")
    def exists(name: str) -> JSONResponse:
        return answer(lambda: models.CollectionExistence(exists=client.collection_exists(name)))

    @app.put("/collections/{name}")
    async def create(name: str, request: Request) -> JSONResponse:
        b = await body(request, models.CreateCollection)
        return answer(lambda: client.create_collection(
            name, vectors_config=b.vectors, sparse_vectors_config=b.sparse_vectors,
            quantization_config=b.quantization_config, metadata=b.metadata,
        ))  # fmt: skip

    @app.patch("/collections/{name}")
    async def update(name: str, request: Request) -> JSONResponse:
        b = await body(request, models.UpdateCollection)
        return answer(lambda: client.update_collection(name, metadata=b.metadata))

    @app.delete("/collections/{name}")
    def delete_collection(name: str) -> JSONResponse:
        return answer(lambda: client.delete_collection(name))

    @app.put("/collections/{name}/index")
    async def index(name: str, request: Request) -> JSONResponse:
        b = await body(request, models.CreateFieldIndex)
        return answer(lambda: client.create_payload_index(name, field_name=b.field_name, field_schema=b.field_schema))

    @app.get("/aliases")
    def aliases() -> JSONResponse:
        return answer(client.get_aliases)

    @app.post("/collections/aliases")
    async def change_aliases(request: Request) -> JSONResponse:
        b = await body(request, models.ChangeAliasesOperation)
        return answer(lambda: client.update_collection_aliases(change_aliases_operations=b.actions))

    @app.put("/collections/{name}/points")
    async def upsert(name: str, request: Request) -> JSONResponse:
        b = await body(request, models.PointInsertOperations)
        return answer(lambda: client.upsert(name, points=b.points if isinstance(b, models.PointsList) else b.batch))

    @app.post("/collections/{name}/points/delete")
    async def delete(name: str, request: Request) -> JSONResponse:
        b = await body(request, models.PointsSelector)
        return answer(lambda: client.delete(name, points_selector=b))

    @app.put("/collections/{name}/points/vectors")
    async def update_vectors(name: str, request: Request) -> JSONResponse:
        b = await body(request, models.UpdateVectors)
        return answer(lambda: client.update_vectors(name, points=b.points, update_filter=b.update_filter))

    @app.post("/collections/{name}/points/scroll")
    async def scroll(name: str, request: Request) -> JSONResponse:
        b = await body(request, models.ScrollRequest)

        def page() -> models.ScrollResult:
            points, after = client.scroll(
                name, scroll_filter=b.filter, limit=b.limit or 10, offset=b.offset, order_by=b.order_by,
                with_payload=b.with_payload if b.with_payload is not None else True,
                with_vectors=b.with_vector if b.with_vector is not None else False,
            )  # fmt: skip
            return models.ScrollResult(points=points, next_page_offset=after)

        return answer(page)

    @app.post("/collections/{name}/points/count")
    async def count(name: str, request: Request) -> JSONResponse:
        b = await body(request, models.CountRequest)
        return answer(lambda: client.count(name, count_filter=b.filter, exact=b.exact if b.exact is not None else True))

    @app.post("/collections/{name}/points/query/batch")
    async def query_batch(name: str, request: Request) -> JSONResponse:
        b = await body(request, models.QueryRequestBatch)
        return answer(lambda: client.query_batch_points(name, requests=b.searches))

    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True, help="local mode's folder")
    args = parser.parse_args()
    uvicorn.run(make_app(QdrantClient(path=args.path)), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
