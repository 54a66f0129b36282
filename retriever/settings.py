"""Settings, grouped by concern: each group is a pydantic-settings object read from `XMSEARCH_*`
variables (or a `.env` file in the working folder), and each piece of code takes the group it needs.
This module holds the groups of the model, the index and search; ingestion, the queue and the API
add theirs in their own packages, and `xmsearch.settings.Settings` joins them all."""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings import SettingsError as PydanticSettingsError

from xmsearch.retriever.errors import InvalidInputError, PermanentError, plain
from xmsearch.retriever.model.languages import is_language

DEFAULT_MODEL = "antoinelouis/colbert-xm"
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


class SettingsError(PermanentError):
    """A setting whose value is wrong: the message names the variable, the problem and a good value."""


class EnvSettings(BaseSettings):
    """What every group shares: the `XMSEARCH_` prefix, a `.env` file, other variables ignored."""

    model_config = SettingsConfigDict(env_prefix="XMSEARCH_", env_file=".env", extra="ignore", protected_namespaces=())

    @classmethod
    def from_env(cls) -> Self:
        """The settings the environment gives, or one SettingsError line per wrong variable."""
        try:
            return cls()
        except ValidationError as exc:
            problems = [cls._problem(str(e["loc"][0]), e["msg"], e.get("input")) for e in exc.errors() if e["loc"]]
            raise SettingsError("; ".join(problems)) from None
        except PydanticSettingsError as exc:  # a value that is not JSON where JSON is expected
            name = re.search(r'field "(\w+)"', str(exc))
            field = name.group(1) if name else "?"
            raise SettingsError(cls._problem(field, f"not valid JSON ({exc.__cause__})", None)) from None

    def with_changes(self, changes: Mapping[str, str], allowed: Collection[str] | None = None, who: str = "") -> Self:
        """These settings with `changes` (names as in the settings or as their variables, values as the
        environment gives them, JSON for lists and objects), each checked as the environment would be.
        `allowed` limits the names that may change; `who` says who changes them, in the errors."""
        named = named_as_settings(changes)
        unknown = sorted(set(named) - set(type(self).model_fields if allowed is None else allowed))
        if unknown:
            choices = "" if allowed is None else f"; it changes {', '.join(allowed)}"
            raise InvalidInputError(f"{who or 'the settings'} cannot change {', '.join(unknown)}{choices}")
        data = self.model_dump()
        try:
            for name, value in named.items():
                structured = isinstance(data[name], (dict, list)) and isinstance(value, str)
                data[name] = json.loads(value) if structured else value
            return type(self).model_validate(data)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"{who or 'the settings'}: not valid JSON ({exc.msg})") from None
        except ValidationError as exc:
            problems = (self._problem(str(e["loc"][0]), e["msg"], e.get("input")) for e in exc.errors() if e["loc"])
            raise InvalidInputError(f"{who or 'the settings'}: {'; '.join(problems)}") from None

    @classmethod
    def _problem(cls, field: str, message: str, value: object) -> str:
        info = cls.model_fields.get(field)
        example = (info.examples or [info.default])[0] if info is not None else None
        given = "" if value is None else f"={value!r}"
        hint = f" (e.g. XMSEARCH_{field.upper()}={example})" if example not in (None, "", [], {}) else ""
        return f"XMSEARCH_{field.upper()}{given}: {plain(message)}{hint}"


def named_as_settings(changes: Mapping[str, str]) -> dict[str, str]:
    """`XMSEARCH_CHUNK_OVERLAP` or `chunk_overlap` -> `chunk_overlap`."""
    return {name.strip().lower().removeprefix("xmsearch_"): value for name, value in changes.items()}


class EncoderSettings(EnvSettings):
    """The model: which checkpoint, where it runs, and how languages map to adapters."""

    model: str = Field(DEFAULT_MODEL, description="Hub id or local folder of a ColBERT-XM (colbert-ai) checkpoint.")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="auto = fp16 on CUDA (as the reference encodes documents); on a CPU fp32 or bf16, whichever "
        "measured faster on this CPU for this model (once, cached in ~/.cache/xmsearch/precision.json).",
    )
    query_runtime: Literal["auto", "torch", "onnx", "onnx-int8"] = Field(
        "auto",
        description="What runs query forwards: auto = on a CPU, ONNX Runtime in fp32 where it measured faster than "
        "torch for this model here (timed once, kept in ~/.cache/xmsearch/query_runtime.json), else torch; torch (as "
        "documents); onnx = ONNX Runtime in fp32 (torch fp32's vectors); onnx-int8 = ONNX Runtime with int8 linear "
        "layers (fastest; measured agreement in the README). The model is exported for ONNX Runtime once, cached in "
        "~/.cache/xmsearch/onnx.",
    )
    batch_size: int = Field(32, ge=1, le=4096, description="Texts per forward pass.")
    search_priority_share: float = Field(
        0.25,
        gt=0.0,
        le=1.0,
        description="Share of the time that indexing in a process that also searches (embedded) keeps while "
        "searches are waiting; 1 = no priority for searches.",
    )
    background_batch_size: int = Field(
        4, ge=1, le=4096, description="Texts per document pass while searches run in the same process."
    )
    threads: int | None = Field(
        None,
        ge=1,
        description="torch intra-op threads for this process (and ONNX Runtime's where queries run on "
        "it); unset keeps torch's default.",
    )
    marker_convention: Literal["legacy", "current"] = Field(
        "legacy", description="legacy = colbert-ai <= 0.2.20 (what ColBERT-XM was trained with)."
    )
    unknown_language: Literal["fallback", "error"] = Field(
        "fallback", description="What to do with a language that has no adapter."
    )
    fallback_language: str = Field("en", description="Adapter used by the fallback policy.")
    detect_language: bool = Field(True, description="Detect the language of texts given without one.")
    langid_min_confidence: float = Field(
        0.6, ge=0.0, le=1.0, description="Detections below this confidence follow the routing policy."
    )
    langid_policy: Literal["plausible", "strict"] = Field(
        "plausible",
        description="An unsure detection: plausible = keep the best guess where its script agrees with the text's, "
        "fall back only when nothing is plausible; strict = fall back below langid_min_confidence.",
    )

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        if not _DEVICE.match(value):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, not {value!r}")
        return value


class StoreSettings(EnvSettings):
    """The index: which Qdrant backend, where, and how a collection stores its documents and vectors."""

    store: Literal["auto", "edge", "local", "server"] = Field(
        "auto", description="auto = server when qdrant_url is set, else Qdrant Edge in data_dir."
    )
    data_dir: Path = Field(Path("data"), description="Folder of the embedded stores (Edge, local mode).")
    qdrant_url: str | None = Field(
        None, description="URL of a Qdrant server or cluster (distributed mode).", examples=["http://qdrant:6333"]
    )
    qdrant_api_key: SecretStr | None = Field(None, description="API key of the Qdrant server.")
    qdrant_grpc: bool = Field(False, description="Talk gRPC to the server (port 6334) instead of REST.")
    qdrant_timeout: float = Field(10.0, gt=0, description="Seconds before a server request is given up.")
    qdrant_retries: int = Field(3, ge=0, le=10, description="Retries of a server request that did not answer.")
    qdrant_shards: int = Field(
        1, ge=1, le=1024, description="Shards of each new version on a Qdrant server (a cluster spreads them)."
    )
    qdrant_replication_factor: int = Field(
        1, ge=1, le=16, description="Copies of each shard of a new version on a Qdrant cluster (2: one node may fail)."
    )
    collection: str = Field(
        "xmsearch", pattern=r"^[A-Za-z0-9_-]{1,100}$", description="Alias that readers and writers use."
    )
    vector_datatype: Literal["float16", "float32"] = Field("float16", description="Storage type of the token vectors.")
    quantization: Literal["none", "int8", "binary"] = Field(
        "none", description="An extra quantized copy of the token vectors kept in RAM (originals on disk)."
    )
    token_pool_factor: int = Field(
        1,
        ge=1,
        le=16,
        description="Token pooling at index time: store about 1/factor of each passage's token vectors (means of "
        "Ward clusters); 1 = off (a version records it).",
    )
    chunk_overlap: int = Field(
        32, ge=0, description="Tokens shared by consecutive chunks of a document (a version records it)."
    )
    metadata_indexes: dict[str, Literal["keyword", "integer", "float", "bool"]] = Field(
        default_factory=dict,
        description='Payload indexes on metadata keys, e.g. {"category": "keyword"}.',
        examples=['{"category": "keyword", "year": "integer"}'],
    )


class SearchSettings(EnvSettings):
    """Search: the first stage, query batching and the limits of a query."""

    first_stage: Literal["auto", "on", "off"] = Field(
        "auto", description="A single-vector HNSW prefetch before exact MaxSim: auto = from first_stage_min_points."
    )
    first_stage_encoding: Literal["centroids", "mean", "muvera"] = Field(
        "centroids",
        description="centroids = sparse vectors over a codebook of token centroids; mean = normalised mean of the "
        "token vectors (128 dims); muvera needs xmsearch[muvera].",
    )
    first_stage_probe: int = Field(4, ge=1, le=256, description="centroids: nearest centroids per query token.")
    first_stage_centroids: int = Field(
        0, ge=0, le=262_144, description="centroids: codebook size (0: 16,384, fewer for under 262,144 tokens)."
    )
    first_stage_min_points: int = Field(
        10_000, ge=0, description="Collection size from which `auto` uses the first stage."
    )
    first_stage_candidates: int | None = Field(
        None,
        ge=10,
        le=10_000,
        description="Candidates the first stage finds for the rerank (unset: by collection size from the measured "
        "curve of the first stage, which keeps recall@10 level as the collection grows: centroids 1,200 up to 50k "
        "passages through the shortlist of pooled passages, 800 through that of the pooled query (a collection built "
        "before pooled passages), 600 without a shortlist).",
    )
    shortlist: int = Field(
        150,
        ge=0,
        le=10_000,
        description="With a first stage: its candidates are first scored by MaxSim of the query against each passage "
        "pooled into 1/8 as many vectors at write time (in a collection built before those: of the query pooled by "
        "shortlist_pool_factor against the tokens), and this many of them (for each 10 hits) reranked exactly; 0 = "
        "all candidates reranked exactly.",
    )
    shortlist_pool_factor: int = Field(
        4,
        ge=1,
        le=32,
        description="The shortlist's query in a collection without pooled passages (built before them): about "
        "1/factor of the query's token vectors (sums of Ward clusters of them).",
    )
    query_batching: bool = Field(
        True, description="Encode the queries of concurrent searches together (never waits for a timer)."
    )
    max_k: int = Field(1000, ge=1, description="The most hits one search may ask for.")
    max_query_chars: int = Field(2000, ge=1, description="Longest query text accepted (tokens: query_maxlen).")
    tenant_languages: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Each tenant's usual languages, strongest first: a query searched for one tenant (its API key's, "
        "or a filter on it), or a document of it, given without a language takes them where detection is unsure, "
        "after the request's own hints.",
        examples=['{"acme": ["de", "fr"]}'],
    )
    langid_tenant_prior: bool = Field(
        True,
        description="A query searched for one tenant and given without a language takes the languages of the "
        "tenant's documents (5% of them or more, most first) where detection is unsure, after its default languages.",
    )

    @field_validator("tenant_languages")
    @classmethod
    def _check_tenant_languages(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for tenant, codes in value.items():
            for code in codes:
                if not is_language(code):
                    raise ValueError(f"{code!r} (tenant {tenant!r}) is not a language code (e.g. de, pt-BR)")
        return value


class RetrieverSettings(EncoderSettings, StoreSettings, SearchSettings):
    """What readers and writers share (`Components`): the model, the index and search."""
