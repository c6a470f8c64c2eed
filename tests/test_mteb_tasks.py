"""dataset=mteb: real mteb tasks read by mteb's own loader from local copies in the hub layout."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image

from mixsearch.data import DataError, load_benchmark
from mixsearch.data.mteb_fixture import write_hub_layout, write_it2it, write_t2i
from mixsearch.data.mteb_tasks import load_mteb_task


@pytest.fixture(scope="module")
def copies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("mteb")
    return {"oven": write_it2it(base / "oven", n=10), "flickr": write_t2i(base / "flickr", n=6)}


def test_image_text_task_keeps_each_rows_modality(copies: dict[str, Path]) -> None:
    bench = load_mteb_task("OVENIT2ITRetrieval", root=str(copies["oven"]))
    assert bench.name == "mteb/OVENIT2ITRetrieval"
    # write_it2it: 20 docs; i % 5 == 4 image-only (4), i % 7 == 6 and not image-only text-only (2)
    assert bench.meta["counts"]["corpus"] == {"total": 20, "text": 2, "image": 4, "image+text": 14}
    assert bench.meta["counts"]["queries"] == {"total": 10, "text": 0, "image": 0, "image+text": 10}
    assert [r.modality for r in bench.mixed_corpus] == [r.modality for r in bench.corpus]
    assert bench.qrels == {f"oven_q_{i}": {f"oven_doc_{i}": 1} for i in range(10)}
    meta = bench.meta
    assert (meta["mteb_task"], meta["revision"], meta["main_score"], meta["languages"]) == (
        "OVENIT2ITRetrieval", "619847759581b2e57dfc1d68e2dadedc9599b283", "ndcg_at_10", ["eng-Latn"])
    doc = bench.corpus[0]
    assert doc.image.load().size == (64, 64)  # the toy world's image size, decoded from the bytes
    assert doc.image.content_key().startswith("sha1:")


def test_text_to_image_task_has_image_documents(copies: dict[str, Path]) -> None:
    bench = load_benchmark("mteb", task="Flickr30kT2IRetrieval", root=str(copies["flickr"]))
    assert {r.modality for r in bench.corpus} == {"image"} and len(bench.corpus) == 12
    assert {r.modality for r in bench.queries} == {"text"} and len(bench.queries) == 12
    assert bench.qrels["q3_1"] == {"3.jpg": 1}


def test_mteb_text_joins_follow_mteb(tmp_path: Path) -> None:
    """Documents read ``title text`` and queries ``text instruction``, as mteb feeds models;
    judgements of docs missing from the corpus are set apart, queries without a positive go."""
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buf, format="PNG")
    root = write_hub_layout(tmp_path / "c", {
        "corpus": {"id": ["d1", "d2"], "title": ["Title", None], "text": ["body", "other"],
                   "image": [{"bytes": buf.getvalue(), "path": None}, None]},
        "queries": {"id": ["q1", "q2"], "text": ["find", "none"], "instruction": ["now", None]},
        "qrels": {"query-id": ["q1", "q1", "q2"], "corpus-id": ["d1", "gone", "d2"], "score": [1, 1, 0]},
    })
    bench = load_mteb_task("OVENIT2ITRetrieval", root=str(root))
    assert [(r.text, r.modality) for r in bench.corpus] == [("Title body", "image+text"), ("other", "text")]
    assert [r.text for r in bench.queries] == ["find now"]
    assert bench.qrels == {"q1": {"d1": 1}}
    assert bench.absent_qrels == {"q1": {"gone": 1}}
    assert bench.meta["judgements"] == {"judgements_of_docs_not_in_corpus": 1,
                                        "queries_judging_only_absent_docs": 0,
                                        "queries_without_positive_removed": 1}


def test_judgements_of_absent_docs_score_as_mteb_scores_them(tmp_path: Path) -> None:
    """mteb keeps judgements of docs its corpus lacks in pytrec_eval's qrels: they are relevant
    docs never retrieved, and a query judging only such docs scores 0. mixsearch's metrics on
    the same rankings equal mteb's own scoring over the task's qrels file, read directly; with
    metrics.absent_qrels=drop they are higher (retrievable docs only). The α sweep agrees."""
    import pandas as pd
    from mteb._evaluators.retrieval_metrics import calculate_retrieval_scores

    import mixsearch
    from mixsearch.evaluation import Evaluator
    from mixsearch.pipeline import embed_all, resolve_fusion

    root = write_it2it(tmp_path / "oven", n=10, absent=3)
    bench = load_mteb_task("OVENIT2ITRetrieval", root=str(root))
    assert bench.meta["judgements"] == {"judgements_of_docs_not_in_corpus": 4,
                                        "queries_judging_only_absent_docs": 1,
                                        "queries_without_positive_removed": 0}
    assert "oven_q_9" in {r.id for r in bench.queries} and "oven_q_9" not in bench.qrels
    enc = mixsearch.build_encoder("toy", device="cpu")
    ks = [1, 5, 10, 20]
    metrics = {"ks": ks, "measures": ["ndcg", "recall", "hit"]}
    res = mixsearch.evaluate(enc, bench, calibration="gr", cache_dir=tmp_path / "cache",
                             metrics=metrics, retrieval={"k": 20})
    table = pd.read_parquet(root / "qrels" / "test-00000-of-00001.parquet")
    qrels: dict[str, dict[str, int]] = {}
    for q, d, s in table[["query-id", "corpus-id", "score"]].itertuples(index=False):
        qrels.setdefault(q, {})[d] = int(s)
    results = {q: dict(zip(res.ranked[q], map(float, res.scores[q]), strict=True)) for q in res.ranked}
    ref = calculate_retrieval_scores(results, qrels, ks)
    for k in ks:
        assert res.metrics[f"ndcg@{k}"] == pytest.approx(ref.ndcg[f"NDCG@{k}"], abs=1e-5)
        assert res.metrics[f"recall@{k}"] == pytest.approx(ref.recall[f"Recall@{k}"], abs=1e-5)
        assert res.metrics[f"hit@{k}"] == pytest.approx(ref.hit_rate[f"HitRate@{k}"], abs=1e-5)
    assert len(res.per_query) == 10  # oven_q_9 is scored (0), with no target modality
    row = res.per_query.set_index("qid").loc["oven_q_9"]
    assert row["target_modality"] == "none" and row["ndcg@10"] == 0.0
    assert res.corpus["absent_judgements"] == {"n": 4, "n_queries": 4, "scored": "count"}

    dropped = mixsearch.evaluate(enc, bench, calibration="gr", cache_dir=tmp_path / "cache",
                                 metrics={**metrics, "absent_qrels": "drop"}, retrieval={"k": 20})
    assert len(dropped.per_query) == 9
    assert dropped.metrics["ndcg@10"] > res.metrics["ndcg@10"]
    with pytest.raises(ValueError, match=r"metrics\.absent_qrels"):
        mixsearch.evaluate(enc, bench, cache_dir=tmp_path / "cache",
                           metrics={**metrics, "absent_qrels": "keep"}, retrieval={"k": 20})

    fusion = resolve_fusion({}, enc)
    embs, _ = embed_all(enc, bench, None, {"progress": False}, corpus_cfg={"mode": "released"},
                        cal_cfg={"method": "gr"}, fusion_cfg=fusion)
    ev = Evaluator(bench, embs, calibration={"method": "gr"}, retrieval={"k": 20}, metrics=metrics)
    fusions = [{**fusion, "alpha": a} for a in (0.2, 0.5, 0.8)]
    for swept, f in zip(ev.sweep(fusions), fusions, strict=True):
        assert swept.metrics == pytest.approx(ev.run(f).metrics, abs=1e-12)
    assert ev.sweep(fusions[1:2])[0].metrics == pytest.approx(res.metrics, abs=1e-12)


def test_a_changed_local_copy_is_read_again(tmp_path: Path) -> None:
    """datasets keys a local folder's Arrow cache by its base name; ours by its files."""
    root = write_t2i(tmp_path / "copy", n=3)
    assert len(load_mteb_task("Flickr30kT2IRetrieval", root=str(root)).corpus) == 6
    write_t2i(tmp_path / "copy", n=4)
    assert len(load_mteb_task("Flickr30kT2IRetrieval", root=str(root)).corpus) == 8


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"task": "NoSuchTask"}, "not an mteb task"),
    ({"task": "???"}, "required with dataset=mteb"),
    ({"task": "Banking77Classification"}, "'Classification', not a retrieval task"),
    ({"task": "Flickr30kT2IRetrieval", "split": "dev"}, "evaluates on ['test']"),
    ({"task": "Flickr30kT2IRetrieval", "root": "/nonexistent/copy"}, "no README.md there"),
    ({"task": "ArguAna"}, "ignore_identical_ids=True"),  # mteb drops each query's own id
])
def test_bad_task_options_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(DataError, match="mteb.get_tasks|evaluates on|hf download") as e:
        load_mteb_task(**kwargs)
    assert message in str(e.value)


def test_offline_without_a_copy_names_task_revision_and_command() -> None:
    assert os.environ["HF_DATASETS_OFFLINE"] == "1"
    with pytest.raises(DataError) as e:
        load_mteb_task("Flickr30kT2IRetrieval")
    text = str(e.value)
    assert "Flickr30kT2IRetrieval" in text and "e819702b287bfbe084e129a61f308a802b7c108e" in text
    assert ("hf download mteb/flickr30kt2i --repo-type dataset --revision "
            "e819702b287bfbe084e129a61f308a802b7c108e") in text


def test_experiment_sweeps_real_any2any_tasks_with_and_without_gr() -> None:
    import mteb
    from hydra import compose, initialize_config_dir

    conf = Path(__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=mteb_any2any"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    assert params["calibration"] == "none,gr"
    assert cfg.dataset._target_ == "mixsearch.data.mteb_tasks.load_mteb_task"
    tasks = params["dataset.task"].split(",")
    categories = {mteb.get_task(t).metadata.category for t in tasks}
    assert {"it2it", "t2it", "t2i"} <= categories
    assert all(mteb.get_task(t).metadata.type == "Any2AnyRetrieval" for t in tasks)


def test_every_calibration_and_fusion_runs_on_an_mteb_task(copies: dict[str, Path], tmp_path: Path) -> None:
    """The task ships no calibration split: fitted methods cross-fit (or use the eval set,
    labelled transductive); image, text and image+text documents are all ranked."""
    import mixsearch

    bench = load_mteb_task("OVENIT2ITRetrieval", root=str(copies["oven"]))
    enc = mixsearch.build_encoder("toy", device="cpu")
    modality = {r.id: r.modality for r in bench.corpus}
    results = {}
    # the built-in methods (other tests register test-only ones in the same registry)
    for method in ("none", "gr", "i0t", "pushdown", "project", "procrustes"):
        for fusion in ("weighted", "score"):
            res = mixsearch.evaluate(enc, bench, calibration=method, fusion=fusion, cache_dir=tmp_path)
            assert 0.0 <= res.metrics["ndcg@10"] <= 1.0
            assert {modality[d] for ranked in res.ranked.values() for d in ranked} == \
                {"text", "image", "image+text"}
            results[method, fusion] = res
    assert results["gr", "weighted"].calibration["source"] == "crossfit"
    assert results["gr", "weighted"].metrics["ndcg@10"] > results["none", "weighted"].metrics["ndcg@10"]
    trans = mixsearch.evaluate(enc, bench, calibration={"method": "gr", "source": "transductive"},
                               cache_dir=tmp_path)
    assert trans.calibration["source"] == "transductive"


def test_download_check_names_a_missing_task_and_accepts_a_copy(
        copies: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    from experiments import download

    assert download.main(["--check", "--datasets", "mteb", "dataset.task=Flickr30kT2IRetrieval"]) == 2
    assert "hf download mteb/flickr30kt2i --repo-type dataset" in capsys.readouterr().err
    assert download.main(["--check", "--datasets", "mteb", "dataset.task=Flickr30kT2IRetrieval",
                          f"dataset.root={copies['flickr']}"]) == 0


def test_a_local_copy_is_dated_by_its_download_metadata(tmp_path: Path, caplog) -> None:
    """A copy made by ``hf download`` records its commit per file: results carry that commit
    (with a warning when mteb pins another). A hand-made or edited copy is reported under the
    pinned revision, marked unverified, with the file at fault named."""
    import time

    from mixsearch.data.mteb_tasks import copy_revision

    root = write_t2i(tmp_path / "copy", n=3)
    pinned = "p" * 40
    revision, how = copy_revision(root, pinned)
    assert revision == pinned and how.startswith("unverified: ") and "has no download metadata" in how
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())

    def record(commit: str) -> None:
        for rel in files:  # the format huggingface_hub writes: commit, etag, download time
            meta = root / ".cache" / "huggingface" / "download" / f"{rel}.metadata"
            meta.parent.mkdir(parents=True, exist_ok=True)
            meta.write_text(f"{commit}\netag\n{time.time() + 5}\n")

    record("c" * 40)
    assert copy_revision(root, pinned) == ("c" * 40, "download metadata")
    bench = load_mteb_task("Flickr30kT2IRetrieval", root=str(root))
    assert (bench.meta["revision"], bench.meta["revision_check"]) == ("c" * 40, "download metadata")
    assert bench.meta["pinned_revision"] != "c" * 40
    assert "the local copy is revision cccc" in caplog.text
    edited = root / files[-1]
    os.utime(edited, (time.time() + 60, time.time() + 60))
    revision, how = copy_revision(root, pinned)
    assert revision == pinned and how == f"unverified: {files[-1]} was modified after its download"
