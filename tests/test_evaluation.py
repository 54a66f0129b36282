"""`xmsearch eval`: the measures against hand-computed cases, the evaluation sets' layouts and their
errors, and the whole command on the bundled set with the tiny model (the mechanics, not quality)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import ir_measures
import pytest

from tests.helpers import CLI
from xmsearch.evaluation.data import BUNDLED, load
from xmsearch.evaluation.runs import Config, evaluate
from xmsearch.evaluation.scores import compare, score
from xmsearch.ingest.documents import Document, Reject, limits
from xmsearch.retriever.errors import InvalidInputError, PermanentError
from xmsearch.settings import Settings

LIMITS = limits(Settings())


def test_the_measures_match_hand_computed_values() -> None:
    """trec_eval's definitions: nDCG's gain is the grade itself, RR the first relevant rank's inverse;
    a judged query without hits scores 0 and still counts."""
    qrels = {"q1": {"d1": 1}, "q2": {"d3": 2, "d4": 1}, "q3": {"d5": 1}}
    ranking = {"q1": {"d2": 3.0, "d1": 2.0}, "q2": {"d4": 3.0, "x": 2.0, "d3": 1.0}}
    scores = score(qrels, ranking, {"q1": "en", "q2": "fr", "q3": "fr"})
    q1_ndcg = 1 / math.log2(3)
    q2_ndcg = (1 + 2 / math.log2(4)) / (2 + 1 / math.log2(3))
    assert scores.per_query["nDCG@10"] == pytest.approx({"q1": q1_ndcg, "q2": q2_ndcg, "q3": 0.0})
    assert scores.per_query["MRR@10"] == pytest.approx({"q1": 0.5, "q2": 1.0, "q3": 0.0})
    assert scores.overall["MRR@10"] == pytest.approx(1.5 / 3) and scores.overall["R@100"] == pytest.approx(2 / 3)
    assert scores.languages["fr"]["nDCG@10"] == pytest.approx(q2_ndcg / 2)
    assert scores.queries_per_language == {"en": 1, "fr": 2}


def test_the_measures_match_the_librarys_own_example() -> None:
    """The example of ir-measures' README: nDCG@10 0.8155 and RR 0.75 over its two queries."""
    qrels = {"Q0": {"D0": 0, "D1": 1}, "Q1": {"D0": 0, "D3": 2}}
    ranking = {"Q0": {"D0": 1.2, "D1": 1.0}, "Q1": {"D0": 2.4, "D3": 3.6}}
    scores = score(qrels, ranking, {})
    assert scores.overall["nDCG@10"] == pytest.approx(0.8154648767857288)
    assert scores.overall["MRR@10"] == pytest.approx(0.75)
    assert scores.per_query["nDCG@10"] == pytest.approx({"Q0": 0.6309297535714575, "Q1": 1.0})


def test_a_comparison_is_paired_and_says_when_nothing_changed() -> None:
    qrels = {f"q{i}": {"right": 1} for i in range(8)}
    good = {q: {"right": 2.0, "wrong": 1.0} for q in qrels}
    worse = {q: ({"wrong": 2.0, "right": 1.0} if i % 4 else good[q]) for i, q in enumerate(qrels)}
    languages = dict.fromkeys(qrels, "en")
    base = score(qrels, good, languages)
    same = {d.measure: d for d in compare(base, score(qrels, good, languages))}
    assert same["MRR@10"].delta == 0 and same["MRR@10"].p_value is None
    lower = {d.measure: d for d in compare(base, score(qrels, worse, languages))}
    assert lower["MRR@10"].delta == pytest.approx(-0.375)
    assert lower["MRR@10"].p_value is not None and lower["MRR@10"].p_value < 0.01
    assert lower["R@100"].p_value is None  # found either way


def _beir(folder: Path, corpus: list[str], queries: list[str], qrels: str) -> Path:
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("\n".join(corpus) + "\n")
    (folder / "queries.jsonl").write_text("\n".join(queries) + "\n")
    (folder / "qrels" / "test.tsv").write_text(qrels)
    return folder


def test_beir_and_mmarco_layouts_read_the_same(tmp_path: Path) -> None:
    beir = _beir(
        tmp_path / "beir",
        ['{"_id": "d1", "title": "Rhein", "text": "Der Rhein fließt."}', '{"_id": 2, "text": "Die Elbe."}'],
        ['{"_id": "q1", "text": "wo fließt der Rhein"}', '{"_id": "q9", "text": "not judged"}'],
        "query-id\tcorpus-id\tscore\nq1\td1\t1\n",
    )
    mmarco = tmp_path / "mmarco"
    mmarco.mkdir()
    (mmarco / "collection.tsv").write_text("d1\tDer Rhein fließt.\n2\tDie Elbe.\n")
    (mmarco / "queries.dev.tsv").write_text("q1\two fließt der Rhein\n")
    (mmarco / "qrels.dev.tsv").write_text("q1 0 d1 1\n")
    one, other = load(beir, LIMITS, language="de"), load(mmarco, LIMITS, "dev", "de")
    assert one.qrels == other.qrels == {"q1": {"d1": 1}}
    assert [q.text for q in one.queries] == [q.text for q in other.queries] == ["wo fließt der Rhein"]
    docs = [d for d in one.corpus if isinstance(d, Document)]
    assert [(d.id, d.text, d.language) for d in docs] == [
        ("d1", "Rhein\nDer Rhein fließt.", "de"),
        ("2", "Die Elbe.", "de"),
    ]
    assert [(d.id, d.text) for d in other.corpus if isinstance(d, Document)] == [
        ("d1", "Der Rhein fließt."),
        ("2", "Die Elbe."),
    ]
    assert load(beir, LIMITS, language="fr").digest != one.digest  # another index: the documents' language differs


@pytest.mark.parametrize(
    ("corpus", "qrels", "message"),
    [
        (['{"_id": "d1", "text": "a"}', "{not json"], "q1\td1\t1\n", r"corpus.jsonl:2: not JSON"),
        (['{"text": "a"}'], "q1\td1\t1\n", r'corpus.jsonl:1: not a record with an "_id"'),
        (
            ['{"_id": "d1", "text": "a"}'],
            "head\ter\ts\nq1\td1\tyes\n",
            r"test.tsv:2: the grade 'yes' is not a whole number",
        ),
        (['{"_id": "d1", "text": "a"}'], "q1 d1\n", r"test.tsv:1: not 'query-id corpus-id score'"),
        (
            ['{"_id": "d1", "text": "a"}'],
            "q1\td1\t1\nq2\td1\t1\n",
            r"judges 1 queries that queries.jsonl lacks, e.g. q2",
        ),
    ],
)
def test_a_broken_set_is_one_line_naming_the_file_and_line(
    tmp_path: Path, corpus: list[str], qrels: str, message: str
) -> None:
    folder = _beir(tmp_path / "set", corpus, ['{"_id": "q1", "text": "a"}'], qrels)
    with pytest.raises(InvalidInputError, match=message):
        load(folder, LIMITS)


def test_an_empty_document_is_rejected_not_fatal(tmp_path: Path) -> None:
    folder = _beir(
        tmp_path / "set",
        ['{"_id": "d1", "text": ""}', '{"_id": "d2", "text": "b"}'],
        ['{"_id": "q", "text": "b"}'],
        "q\td2\t1\n",
    )
    corpus = load(folder, LIMITS).corpus
    assert isinstance(corpus[0], Reject) and corpus[0].location == "corpus.jsonl:1" and isinstance(corpus[1], Document)


def test_configurations_parse_or_say_what_is_wrong() -> None:
    assert Config.parse("exact:first_stage=off, first_stage_candidates=50") == Config(
        "exact", {"first_stage": "off", "first_stage_candidates": "50"}
    )
    assert Config.parse("fr:language=fr") == Config("fr", {}, "fr")
    with pytest.raises(InvalidInputError, match="'first_stage' is not KEY=VALUE"):
        Config.parse("x:first_stage")
    with pytest.raises(InvalidInputError, match="give it a name first"):
        Config.parse(":first_stage=off")
    with pytest.raises(InvalidInputError, match="give it a name first, of letters"):
        Config.parse("../x:first_stage=off")


def test_eval_on_the_bundled_set(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """The command end to end: a report with every language of the set, runs in TREC format that
    ir-measures reads back to the same figures, configurations that differ only when searching share
    one index, a second evaluation reuses it, and a setting that is not one is a one-line error."""
    env = {**os.environ, "XMSEARCH_MODEL": str(tiny_checkpoint), "XMSEARCH_DATA_DIR": str(tmp_path / "data")}
    out = tmp_path / "out"
    args = ["eval", "--out", str(out), "-c", "routed", "-c", "exact:first_stage=off", "-c", "en:language=en"]
    done = subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "xmsearch-mini: 42 documents, 21 judged queries" in done.stdout and "paired t-test" in done.stdout
    result = json.loads((out / "results.json").read_text())
    routed, exact, english = result["configs"]
    assert routed["queries_per_language"] == dict.fromkeys(["ar", "de", "en", "es", "fr", "ru", "zh"], 3)
    assert (
        routed["index"] == exact["index"] == english["index"] and not routed["reused_index"] and exact["reused_index"]
    )
    assert routed["overall"] == exact["overall"]  # 42 documents: `auto` searches exactly
    evalset = load(BUNDLED, LIMITS)
    again = ir_measures.calc_aggregate(
        [ir_measures.nDCG @ 10], evalset.qrels, ir_measures.read_trec_run(str(out / "routed.trec"))
    )
    assert again[ir_measures.nDCG @ 10] == pytest.approx(routed["overall"]["nDCG@10"])
    assert english["languages"]["en"] == routed["languages"]["en"]
    assert english["overall"] != routed["overall"]  # every query through the English adapter
    settings = Settings(model=str(tiny_checkpoint), data_dir=tmp_path / "data", device="cpu")
    [run] = evaluate(evalset, [Config("routed")], settings, tmp_path / "data" / "eval")
    assert run.reused and str(run.index) == routed["index"]
    wrong = subprocess.run(
        [*CLI, "eval", "-c", "x:first_stage=maybe"], capture_output=True, text=True, env=env, timeout=120
    )
    assert (
        wrong.returncode == 1
        and len(wrong.stderr.strip().splitlines()) == 1
        and "XMSEARCH_FIRST_STAGE='maybe'" in wrong.stderr
    )


def test_the_plot_draws_each_configuration_per_language(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from xmsearch.evaluation.report import plot

    result = {
        "set": "s",
        "configs": [
            {"name": "a", "languages": {"en": {"nDCG@10": 0.5}, "fr": {"nDCG@10": 0.25}}},
            {"name": "b", "languages": {"en": {"nDCG@10": 0.75}}},
        ],
    }
    plot(result, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as where it is not installed
    with pytest.raises(PermanentError, match=r"--plot needs matplotlib: pip install 'xmsearch\[plot\]'"):
        plot(result, tmp_path / "again.png")
