#!/usr/bin/env python
"""Golden reference vectors from the original ColBERT implementation (colbert-ai).

What it does
------------
Loads a colbert-ai checkpoint folder (ColBERT-XM style: XMOD backbone, `config.json` with
`model_type: xmod`, `artifact.metadata`, `model.safetensors` with `roberta.*` + `linear.weight`,
XLM-R tokenizer files) with `colbert.modeling.checkpoint.Checkpoint`, encodes a fixed list of cases
(queries and documents, several language adapters, punctuation-heavy text, truncation, length
boundaries, whitespace/Unicode edge cases, batches of mixed lengths, mixed-language batches) on CPU in
fp32, and writes

    OUT.npz   arrays, plus the manifest as the JSON string under the key "manifest"
    OUT.json  the same manifest, pretty-printed, for reading

It reads dim, query_maxlen, doc_maxlen, ... from the checkpoint (nothing is hard-coded), and the
marker convention from the installed colbert-ai:
    colbert-ai <= 0.2.20 -> "legacy"  (prefix ". ", overwrite position 1 with the marker)
    colbert-ai >= 0.2.21 -> "current" (tokenize to max_length-1, insert the marker after <s>)
`--convention` may be given to assert the expected one (the run fails if the installed package
does the other).

Npz layout (one entry per case, KEY = "c000", "c001", ...; see manifest["cases"][i]["key"]):
    KEY/input_ids       int64 [L]   ids exactly as the reference tokenizer produced them for this row
                                    of its batch, after marker insertion and (queries) pad->mask swap.
                                    Queries: L = query_maxlen. Documents: L = the batch's padded length
                                    (pads = pad id, attention 0).
    KEY/attention_mask  int64 [L]
    KEY/keep            bool  [L]   rows the reference keeps (queries: id != pad; documents: id != pad
                                    and id not in the skiplist)
    KEY/vectors         float32 [K, dim]  reference output vectors. Queries: all query_maxlen rows
                                    (K = L). Documents: kept rows only, in order (K = keep.sum()), as
                                    docFromText(keep_dims='flatten') returns them.
    scores/query_keys, scores/doc_keys (str), scores/maxsim float32 [nq, nd]: MaxSim (sum over query
                                    vectors of the max dot product with any kept document vector),
                                    for every query case x every document case.
    skiplist            int64 [n]   the reference skiplist ids (sorted)
    manifest            str         JSON: versions, checkpoint facts, and per case: key, group, kind
                                    (query|doc), text, lang (adapter code), lang_source
                                    ("default_language" = set_default_language on the backbone, the
                                    way the reference runs; "lang_ids" = per-sample lang_ids passed to
                                    XmodModel.forward), convention, batch (id, index, size),
                                    n_attended, n_kept, untruncated_len, truncated.

Environment (outside the project; needs only PyPI)
--------------------------------------------------
    python3 -m venv /work/refenv
    /work/refenv/bin/pip install torch==2.13.0          # CPU wheel (from /opt/wheels here)
    /work/refenv/bin/pip install colbert-ai==0.2.20 "transformers==4.44.*"
  and for the "current" convention a second env:
    python3 -m venv /work/refenv2
    /work/refenv2/bin/pip install torch==2.13.0
    /work/refenv2/bin/pip install colbert-ai==0.2.22 "transformers==4.44.*"
  (faiss is not needed: colbert prints "WARNING: faiss must be imported for indexing" and goes on.
   colbert-ai does not work with transformers 5.)

Run
---
    /work/refenv/bin/python  tests/golden/make_goldens.py CKPT_DIR OUT_legacy  [--convention legacy]
    /work/refenv2/bin/python tests/golden/make_goldens.py CKPT_DIR OUT_current [--convention current]

Notes on the reference
----------------------
* CUDA is hidden (CUDA_VISIBLE_DEVICES="") so that colbert-ai runs fp32 on CPU (on GPU it would
  autocast to fp16 and cast documents to half).
* colbert-ai compiles a C++ extension (segmented_maxsim, used only by search) when it sees no GPU;
  it is skipped here (`--compile-ext` to compile it anyway, needs g++ and ninja). Encoding does not
  use it.
* The reference calls `XmodModel.forward` without `lang_ids`, so the adapter is
  `config.default_language`; it is switched with `ckpt.bert.set_default_language(code)`
  (ckpt.bert is ckpt.model.roberta, an XmodModel; its config object is shared with ckpt.model).
* `model_name` in artifact.metadata may be a hub id (e.g. facebook/xmod-base); it is only used to pick
  the model classes, so it is overridden with the checkpoint path to work offline.
"""

import argparse
import contextlib
import functools
import hashlib
import importlib.metadata
import json
import os
import string
import sys
import warnings

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# colbert-ai builds torch.cuda.amp.GradScaler/autocast unconditionally; on CPU they are disabled no-ops
warnings.filterwarnings("ignore", message=r".*torch\.cuda\.amp\..*deprecated.*")
warnings.filterwarnings("ignore", message=r".*CUDA is not available.*")

import numpy as np  # noqa: E402
import torch  # noqa: E402

# ----------------------------------------------------------------------------------------------
# Cases. Each group is one batch, encoded in one call, with one adapter (or per-sample lang_ids).
# ----------------------------------------------------------------------------------------------

LONG_EN = (
    "ColBERT is a fast and accurate retrieval model, enabling scalable BERT-based search over large "
    "text collections in tens of milliseconds. It relies on fine-grained contextual late interaction: "
    "it encodes each passage into a matrix of token-level embeddings. Then at search time, it embeds "
    "every query into another matrix and efficiently finds passages that contextually match the query "
    "using scalable vector-similarity (MaxSim) operators. These rich interactions allow ColBERT to "
    "surpass the quality of single-vector representation models, while scaling efficiently to large "
    "corpora. ColBERT-XM extends this to many languages by training modular language adapters on an "
    "XMOD backbone with English data only, and swapping the adapter at inference time."
)

LONG_QUERY = (
    "what are the main differences between late interaction retrieval models such as colbert and "
    "single vector dense retrievers when applied to multilingual passage ranking benchmarks"
)

PUNCT_ALL = " ".join(string.punctuation)  # every punctuation character, standalone
PUNCT_SPACED = "Hello , world . a | b \\ c ; d : e ! f ? g \" h ' i ( j ) [ k ] { l } < m > n # o"
PUNCT_GLUED = 'word. another, third; fourth: fifth! sixth? "quoted" (paren) [bracket] {brace} e-mail a/b c\\d x|y'
PUNCT_RUNS = "... --- !!! ??? ,,, ;; :: || \\\\ ** ~~ .,.,"
PUNCT_ABBREV = "U.S.A. e.g. i.e. 3.14 1,000,000 $5 50% C++ C# node.js user@example.com http://x.org/a?b=c"

GROUPS = [
    # --- languages (each with its own adapter) ---
    dict(
        group="lang_en",
        kind="query",
        lang="en_XX",
        texts=["what color is amber urine", "how many people live in Berlin?"],
    ),
    dict(
        group="lang_en",
        kind="doc",
        lang="en_XX",
        texts=[
            "Amber urine is usually a sign of dehydration.",
            "Berlin is the capital and largest city of Germany, with about 3.7 million inhabitants.",
            "Yes.",
        ],
    ),
    dict(
        group="lang_fr",
        kind="query",
        lang="fr_XX",
        texts=["Quelle est la capitale de la France ?", "pourquoi le ciel est-il bleu"],
    ),
    dict(group="lang_fr", kind="doc", lang="fr_XX", texts=["Ceci est un premier document."]),
    dict(
        group="lang_fr",
        kind="doc",
        lang="fr_XX",
        texts=[
            "Paris est la capitale de la France ; c'est aussi sa ville la plus peuplée.",
            "Le ciel est bleu à cause de la diffusion de Rayleigh.",
        ],
    ),
    dict(group="lang_de", kind="query", lang="de_DE", texts=["Wie hoch ist die Zugspitze?", "Größe der Straße"]),
    dict(
        group="lang_de",
        kind="doc",
        lang="de_DE",
        texts=[
            "Die Zugspitze ist mit 2962 m ü. NHN der höchste Gipfel Deutschlands.",
            "Straßen und Flüsse: Übersicht.",
        ],
    ),
    dict(group="lang_zh", kind="query", lang="zh_CN", texts=["琥珀色的尿液是什么颜色？", "北京的人口"]),
    dict(
        group="lang_zh",
        kind="doc",
        lang="zh_CN",
        texts=["北京是中华人民共和国的首都，也是全国的政治、文化中心。", "尿液呈琥珀色通常意味着脱水。"],
    ),
    dict(group="lang_ar", kind="query", lang="ar_AR", texts=["ما هي عاصمة مصر؟", "كم عدد سكان القاهرة"]),
    dict(
        group="lang_ar",
        kind="doc",
        lang="ar_AR",
        texts=[
            "القاهرة هي عاصمة جمهورية مصر العربية وأكبر مدنها.",
            "يبلغ عدد سكان القاهرة أكثر من عشرين مليون نسمة، وفقاً لتقديرات عام 2023.",
        ],
    ),
    # --- the same text under every adapter (adapter switching must matter) ---
    *[
        dict(group="adapter_sweep", kind="query", lang=code, texts=["what color is amber urine"])
        for code in ["en_XX", "fr_XX", "de_DE", "zh_CN", "ar_AR"]
    ],
    *[
        dict(
            group="adapter_sweep",
            kind="doc",
            lang=code,
            texts=["Amber urine is usually a sign of dehydration."],
        )
        for code in ["en_XX", "fr_XX", "de_DE", "zh_CN", "ar_AR"]
    ],
    # --- punctuation (the skiplist) ---
    dict(group="punct", kind="query", lang="en_XX", texts=[PUNCT_SPACED, "word. , . | \\ end"]),
    dict(
        group="punct",
        kind="doc",
        lang="en_XX",
        texts=[
            PUNCT_ALL,
            PUNCT_SPACED,
            PUNCT_GLUED,
            PUNCT_RUNS,
            PUNCT_ABBREV,
            "Ceci est un premier document.",
            ", . | \\",
            "...wait, what?!",
        ],
    ),
    # --- truncation and batches of mixed lengths ---
    dict(group="trunc", kind="query", lang="en_XX", texts=[LONG_QUERY, "short", LONG_QUERY + " " + LONG_QUERY]),
    dict(
        group="trunc",
        kind="doc",
        lang="en_XX",
        texts=[
            "short doc",
            LONG_EN,
            "A medium sized document, with a comma and a period.",
            LONG_EN + " " + LONG_EN,
        ],
    ),
    dict(group="trunc_fr", kind="doc", lang="fr_XX", texts=["Paris. " * 60, "Lyon."]),
    # --- exact length boundaries (filled in at run time from the checkpoint's maxlens) ---
    dict(group="boundary", kind="query", lang="en_XX", texts="BOUNDARY_QUERY"),
    dict(group="boundary", kind="doc", lang="en_XX", texts="BOUNDARY_DOC"),
    # --- whitespace, case, Unicode normalisation, empty input ---
    dict(
        group="edge",
        kind="query",
        lang="en_XX",
        texts=[
            "  leading and trailing spaces  ",
            "multiple   internal\tspaces\nand newline",
            "",
            "ÉCOLE Straße naïve café ﬁ ＡＢＣ ①",
            "I ❤️ 🤖 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
        ],
    ),
    dict(
        group="edge",
        kind="doc",
        lang="en_XX",
        texts=[
            "  leading and trailing spaces  ",
            "multiple   internal\tspaces\nand newline",
            "",
            "ÉCOLE Straße naïve café ﬁ ＡＢＣ ①",
            "I ❤️ 🤖 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
            "UPPER lower MiXeD",
        ],
    ),
    # --- one batch, several languages: per-sample lang_ids passed to XmodModel.forward ---
    dict(
        group="mixed_lang",
        kind="query",
        langs=["en_XX", "fr_XX", "en_XX", "zh_CN", "ar_AR"],
        texts=[
            "what color is amber urine",
            "Quelle est la capitale de la France ?",
            "how many people live in Berlin?",
            "琥珀色的尿液是什么颜色？",
            "ما هي عاصمة مصر؟",
        ],
    ),
    dict(
        group="mixed_lang",
        kind="doc",
        langs=["de_DE", "en_XX", "de_DE", "ar_AR", "fr_XX"],
        texts=[
            "Die Zugspitze ist mit 2962 m ü. NHN der höchste Gipfel Deutschlands.",
            "Amber urine is usually a sign of dehydration.",
            "Straßen und Flüsse: Übersicht.",
            "القاهرة هي عاصمة جمهورية مصر العربية وأكبر مدنها.",
            "Ceci est un premier document.",
        ],
    ),
]


def colbert_version():
    return importlib.metadata.version("colbert-ai")


def detect_convention():
    import inspect

    from colbert.modeling.tokenization import query_tokenization

    src = inspect.getsource(query_tokenization.QueryTokenizer.tensorize)
    by_source = "current" if "_insert_prefix_token" in src else "legacy"
    v = tuple(int(x) for x in colbert_version().split(".")[:3])
    by_version = "current" if v >= (0, 2, 21) else "legacy"
    if by_source != by_version:
        raise SystemExit(f"colbert-ai {colbert_version()}: source says {by_source}, version says {by_version}")
    return by_source


def sha256(path, chunk=1 << 24):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                return h.hexdigest()
            h.update(b)


def load_checkpoint(path, compile_ext):
    from colbert.infra import ColBERTConfig
    from colbert.modeling.checkpoint import Checkpoint
    from colbert.modeling.colbert import ColBERT

    if not compile_ext:
        ColBERT.loaded_extensions = True  # skip the CPU segmented_maxsim build (search only)
    # ColBERT.__init__ reads colbert_config.total_visible_gpus from the *argument*, so one must be given.
    # model_name only selects the HF classes (from that name's config.json): point it at the checkpoint.
    ckpt = Checkpoint(path, colbert_config=ColBERTConfig(model_name=path), verbose=0)
    assert not ckpt.training and not ckpt.model.training
    assert ckpt.device.type == "cpu", ckpt.device
    assert next(ckpt.model.parameters()).dtype == torch.float32
    return ckpt


def check_weights_loaded(ckpt, path):
    """Every parameter of the loaded model must equal the file's tensor (no silent random init)."""
    from safetensors import safe_open

    f = os.path.join(path, "model.safetensors")
    if not os.path.exists(f):
        return {"checked": False}
    sd = ckpt.model.state_dict()
    missing, mismatched = [], []
    with safe_open(f, framework="pt") as fh:
        keys = set(fh.keys())
        for k, v in sd.items():
            if k not in keys:
                missing.append(k)
            elif not torch.equal(fh.get_tensor(k).to(v.dtype), v.cpu()):
                mismatched.append(k)
    unexpected = sorted(keys - set(sd))
    if missing or mismatched:
        raise SystemExit(f"weights not loaded as stored: missing={missing[:10]} mismatched={mismatched[:10]}")
    return {"checked": True, "n_tensors": len(sd), "unexpected_in_file": unexpected}


@contextlib.contextmanager
def adapter(ckpt, lang=None, langs=None):
    """lang: the reference way (set_default_language); langs: per-sample lang_ids for forward."""
    xmod = ckpt.bert  # == ckpt.model.roberta, transformers.XmodModel
    languages = list(xmod.encoder.layer[0].output.adapter_modules.keys())
    old_default = xmod.config.default_language
    try:
        if langs is not None:
            lang_ids = torch.tensor([languages.index(c) for c in langs], dtype=torch.long)
            xmod.forward = functools.partial(type(xmod).forward, xmod, lang_ids=lang_ids)
        else:
            xmod.set_default_language(lang)
        yield
    finally:
        if "forward" in xmod.__dict__:
            del xmod.forward
        xmod.config.default_language = old_default


def boundary_texts(tok, maxlen, convention):
    """Texts whose reference length is maxlen-1, maxlen, maxlen+1 (one word = one piece)."""
    words = [
        w
        for w in [
            "the",
            "of",
            "and",
            "to",
            "in",
            "is",
            "for",
            "on",
            "with",
            "as",
            "by",
            "at",
            "from",
            "it",
            "an",
            "be",
            "this",
            "that",
            "or",
            "are",
        ]
        if len(tok(w, add_special_tokens=False)["input_ids"]) == 1
    ]
    out = []
    for n in range(maxlen - 6, maxlen + 2):
        text = " ".join(words[i % len(words)] for i in range(n))
        pref = ". " + text if convention == "legacy" else text
        full = len(tok(pref)["input_ids"]) + (0 if convention == "legacy" else 1)
        if maxlen - 1 <= full <= maxlen + 1:
            out.append(text)
    assert len(out) == 3, out
    return out


def untruncated_len(tok, text, convention):
    if convention == "legacy":
        return len(tok(". " + text)["input_ids"])
    return len(tok(text)["input_ids"]) + 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", help="colbert-ai checkpoint folder")
    ap.add_argument("out", help="output path; writes OUT.npz and OUT.json (a trailing .npz is dropped)")
    ap.add_argument("--convention", choices=["legacy", "current"], help="assert the installed convention")
    ap.add_argument("--compile-ext", action="store_true", help="let colbert-ai build its C++ extension")
    args = ap.parse_args()

    torch.set_grad_enabled(False)
    convention = detect_convention()
    if args.convention and args.convention != convention:
        raise SystemExit(
            f"installed colbert-ai {colbert_version()} does the {convention} convention, "
            f"not {args.convention}: use the other environment"
        )

    path = os.path.abspath(args.checkpoint)
    ckpt = load_checkpoint(path, args.compile_ext)
    weights = check_weights_loaded(ckpt, path)
    cfg = ckpt.colbert_config
    tok = ckpt.raw_tokenizer
    qtok, dtok = ckpt.query_tokenizer, ckpt.doc_tokenizer
    pad_id, mask_id = tok.pad_token_id, tok.mask_token_id
    skip_ids = sorted(k for k in ckpt.skiplist if isinstance(k, int)) if cfg.mask_punctuation else []
    # the skiplist as documented: first id of each punctuation character
    assert (
        skip_ids == sorted({tok.encode(c, add_special_tokens=False)[0] for c in string.punctuation})
        or not cfg.mask_punctuation
    )

    xmod = ckpt.bert
    languages = list(xmod.encoder.layer[0].output.adapter_modules.keys())
    assert languages == list(xmod.config.languages), "adapter order != config.languages"

    arrays, cases = {}, []
    q_keys, d_keys = [], []
    for batch_id, g in enumerate(GROUPS):
        texts = g["texts"]
        if texts == "BOUNDARY_QUERY":
            texts = boundary_texts(tok, cfg.query_maxlen, convention)
        elif texts == "BOUNDARY_DOC":
            texts = boundary_texts(tok, cfg.doc_maxlen, convention)
        langs = g.get("langs")
        lang = g.get("lang")
        for code in langs or [lang]:
            if code not in languages:
                raise SystemExit(f"checkpoint has no adapter {code!r}; it has {languages}")

        with adapter(ckpt, lang=lang, langs=langs):
            if g["kind"] == "query":
                ids, att = qtok.tensorize(texts)
                Q = ckpt.queryFromText(texts)  # the public path
                Q2 = ckpt.query(ids, att)  # same, from the ids we store
                assert torch.equal(Q, Q2)
                keep = ids != pad_id
                vecs = [Q[i] for i in range(len(texts))]
            else:
                ids, att = dtok.tensorize(texts)
                D, doclens = ckpt.docFromText(texts, bsize=len(texts), keep_dims="flatten")
                Dl = ckpt.docFromText(texts, keep_dims=False)  # per-doc lists, same batch
                offs = np.cumsum([0, *doclens])
                vecs = [D[offs[i] : offs[i + 1]] for i in range(len(texts))]
                for a, b in zip(vecs, Dl, strict=True):
                    assert torch.equal(a, b)
                keep = torch.tensor(ckpt.mask(ids, skiplist=ckpt.skiplist if cfg.mask_punctuation else []))
                assert keep.sum(-1).tolist() == list(doclens)

        for i, text in enumerate(texts):
            key = f"c{len(cases):03d}"
            arrays[f"{key}/input_ids"] = ids[i].cpu().numpy().astype(np.int64)
            arrays[f"{key}/attention_mask"] = att[i].cpu().numpy().astype(np.int64)
            arrays[f"{key}/keep"] = keep[i].cpu().numpy().astype(bool)
            arrays[f"{key}/vectors"] = vecs[i].float().cpu().numpy()
            maxlen = cfg.query_maxlen if g["kind"] == "query" else cfg.doc_maxlen
            ulen = untruncated_len(tok, text, convention)
            cases.append(
                dict(
                    key=key,
                    group=g["group"],
                    kind=g["kind"],
                    text=text,
                    lang=langs[i] if langs else lang,
                    lang_source="lang_ids" if langs else "default_language",
                    convention=convention,
                    batch_id=batch_id,
                    batch_index=i,
                    batch_size=len(texts),
                    n_attended=int(att[i].sum()),
                    n_kept=int(keep[i].sum()),
                    untruncated_len=ulen,
                    truncated=ulen > maxlen,
                )
            )
            (q_keys if g["kind"] == "query" else d_keys).append(key)

    # MaxSim for every query x document case
    scores = np.zeros((len(q_keys), len(d_keys)), dtype=np.float32)
    for a, qk in enumerate(q_keys):
        Qv = arrays[f"{qk}/vectors"].astype(np.float64)
        for b, dk in enumerate(d_keys):
            Dv = arrays[f"{dk}/vectors"].astype(np.float64)
            scores[a, b] = (Qv @ Dv.T).max(axis=1).sum() if len(Dv) else 0.0
    arrays["scores/query_keys"] = np.array(q_keys)
    arrays["scores/doc_keys"] = np.array(d_keys)
    arrays["scores/maxsim"] = scores
    arrays["skiplist"] = np.array(skip_ids, dtype=np.int64)

    import transformers

    manifest = dict(
        format="xmsearch-colbert-goldens/1",
        convention=convention,
        versions=dict(
            colbert_ai=colbert_version(),
            transformers=transformers.__version__,
            torch=torch.__version__,
            numpy=np.__version__,
            python=sys.version.split()[0],
        ),
        device="cpu",
        dtype="float32",
        checkpoint=dict(
            path=path,
            model_safetensors_sha256=sha256(os.path.join(path, "model.safetensors"))
            if os.path.exists(os.path.join(path, "model.safetensors"))
            else None,
            tokenizer_json_sha256=sha256(os.path.join(path, "tokenizer.json"))
            if os.path.exists(os.path.join(path, "tokenizer.json"))
            else None,
            weights=weights,
            dim=cfg.dim,
            query_maxlen=cfg.query_maxlen,
            doc_maxlen=cfg.doc_maxlen,
            mask_punctuation=cfg.mask_punctuation,
            attend_to_mask_tokens=cfg.attend_to_mask_tokens,
            similarity=cfg.similarity,
            query_token_id=cfg.query_token_id,
            doc_token_id=cfg.doc_token_id,
            query_marker_id=int(qtok.Q_marker_token_id),
            doc_marker_id=int(dtok.D_marker_token_id),
            pad_id=int(pad_id),
            mask_id=int(mask_id),
            cls_id=int(tok.cls_token_id),
            sep_id=int(tok.sep_token_id),
            languages=languages,
            default_language=xmod.config.default_language,
        ),
        skiplist=skip_ids,
        cases=cases,
    )
    arrays["manifest"] = np.array(json.dumps(manifest, ensure_ascii=False))

    out = args.out[:-4] if args.out.endswith(".npz") else args.out
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    np.savez_compressed(out + ".npz", **arrays)
    with open(out + ".json", "w", encoding="utf-8") as f:
        json.dump(manifest, f, ensure_ascii=False, indent=1)
    print(
        f"{convention} (colbert-ai {colbert_version()}): {len(cases)} cases "
        f"({len(q_keys)} queries, {len(d_keys)} docs) -> {out}.npz, {out}.json"
    )


if __name__ == "__main__":
    main()
