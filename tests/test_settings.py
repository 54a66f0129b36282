"""Settings are grouped by concern, each group in its own package, and every XMSEARCH_* name still
reaches its field in the one Settings object."""

from __future__ import annotations

import pytest

from xmsearch.ingest.settings import IngestSettings
from xmsearch.logs import LogSettings
from xmsearch.retriever.settings import EncoderSettings, EnvSettings, SearchSettings, SettingsError, StoreSettings
from xmsearch.settings import ApiSettings, ClientSettings, EmbeddedSettings, Settings
from xmsearch.workers.settings import QueueSettings

GROUPS = (
    EncoderSettings,
    StoreSettings,
    SearchSettings,
    IngestSettings,
    QueueSettings,
    ApiSettings,
    EmbeddedSettings,
    ClientSettings,
    LogSettings,
)


def test_the_groups_partition_the_settings() -> None:
    assert not EnvSettings.model_fields
    own = [set(g.model_fields) for g in GROUPS]  # each group adds its fields to EnvSettings, which has none
    assert sum(len(fields) for fields in own) == len(set().union(*own)) == len(Settings.model_fields)


@pytest.mark.parametrize(
    ("variable", "value", "group", "field", "expected"),
    [
        ("XMSEARCH_MODEL", "./tiny", EncoderSettings, "model", "./tiny"),
        ("XMSEARCH_COLLECTION", "docs", StoreSettings, "collection", "docs"),
        ("XMSEARCH_FIRST_STAGE_CANDIDATES", "123", SearchSettings, "first_stage_candidates", 123),
        ("XMSEARCH_CHUNK_OVERLAP", "7", StoreSettings, "chunk_overlap", 7),
        ("XMSEARCH_BROKER_URL", "redis://127.0.0.1:1/0", QueueSettings, "broker_url", "redis://127.0.0.1:1/0"),
        ("XMSEARCH_API_PORT", "8123", ApiSettings, "api_port", 8123),
        ("XMSEARCH_API_QUEUE_JOBS", "5", EmbeddedSettings, "api_queue_jobs", 5),
    ],
)
def test_every_name_reaches_its_field_in_its_group_and_in_settings(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, group: type, field: str, expected: object
) -> None:
    monkeypatch.setenv(variable, value)
    assert getattr(group(), field) == expected
    assert getattr(Settings(), field) == expected


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "XMSEARCH_STORE",
            "bogus",
            "XMSEARCH_STORE='bogus': Input should be 'auto', 'edge', 'local' or 'server' (e.g. ",
        ),
        ("XMSEARCH_API_KEYS", "not json", "XMSEARCH_API_KEYS: not valid JSON (Expecting value"),
        ("XMSEARCH_DEVICE", "gpu", "XMSEARCH_DEVICE='gpu': device must be auto, cpu, cuda or cuda:N, not 'gpu' (e.g. "),
        ("XMSEARCH_BATCH_SIZE", "0", "XMSEARCH_BATCH_SIZE='0': Input should be greater than or equal to 1 (e.g. "),
        (
            "XMSEARCH_TENANT_LANGUAGES",
            '{"acme": ["de", "klingon"]}',
            "XMSEARCH_TENANT_LANGUAGES={'acme': ['de', 'klingon']}: 'klingon' (tenant 'acme') is not a language code",
        ),
    ],
)
def test_a_wrong_setting_is_one_line_naming_the_variable_and_a_good_value(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        Settings.from_env()
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)
    assert f"(e.g. {variable}=" in str(caught.value)
