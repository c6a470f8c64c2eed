"""The paper's reported numbers as data (arXiv 2507.19054; docs/paper.md §3–§5).

Table 1 is copied exactly from the appendix table. The setting-1/2 values are read off the
figures by eye (±0.01) and are marked approximate wherever they are shown.
"""

from __future__ import annotations

import re

from mixsearch.jobinfo import MODEL_NAMES

#: Paper's subset columns in Table 1 order, keyed by our ``dataset.subset`` names.
SUBSETS: dict[str, str] = {
    "Google_WIT": "Google WIT",
    "MSCOCO": "MSCOCO",
    "OVEN": "OVEN",
    "VisualNews": "VisualNews",
}

#: The fusion of image+text docs behind a paper row: VLM2Vec embeds them jointly (the seed's
#: ``vlm_mixed_embedding``), the CLIP family fuses with α = 0.5.
ROW_FUSION: dict[str, str] = {"VLM2Vec-Qwen": "joint", "VLM2Vec-LLaVA-Next": "joint"}
#: GFLOPs per item read off the paper's compute axis (Fig. 1e/4, log scale, approximate).
GFLOPS: dict[str, float] = {"OpenCLIP-B/16": 21.0, "CLIP-B/16": 32.0, "OpenCLIP-L/14": 100.0,
                            "CLIP-L/14": 150.0, "SigLIP-400m": 600.0, "VLM2Vec-Qwen": 4.5e4}

#: Calibration methods with a Table 1 row: none = the raw model, gr = its "GR-" row.
CALIBRATION_PREFIX: dict[str, str] = {"none": "", "gr": "GR-"}

#: Table 1 metrics, in the order of the paper's "a/b/c" cells.
TABLE1_METRICS: tuple[str, ...] = ("ndcg@10", "ndcg@100", "recall@1")

_T1 = """
CLIP-B/16            .478/.505/.443 .388/.426/.292 .354/.398/.209 .563/.604/.498
CLIP-L/14            .505/.516/.454 .426/.490/.329 .389/.431/.253 .596/.656/.525
OpenCLIP-B/16        .551/.563/.519 .570/.615/.489 .385/.426/.229 .643/.693/.543
OpenCLIP-L/14        .566/.585/.536 .605/.662/.540 .387/.445/.265 .653/.733/.567
SigLIP-400m          .546/.566/.523 .327/.374/.260 .372/.428/.271 .385/.475/.366
VLM2Vec-LLaVA-Next   .586/.616/.481 .769/.798/.645 .398/.443/.254 .744/.794/.662
VLM2Vec-Qwen         .632/.660/.519 .753/.778/.633 .412/.467/.244 .734/.784/.653
GR-CLIP-B/16         .603/.642/.524 .636/.690/.523 .406/.459/.240 .726/.768/.645
GR-CLIP-L/14         .648/.678/.555 .656/.708/.547 .465/.523/.296 .754/.770/.661
GR-OpenCLIP-B/16     .636/.666/.572 .668/.751/.589 .434/.490/.253 .758/.783/.664
GR-OpenCLIP-L/14     .678/.704/.604 .699/.784/.629 .467/.525/.282 .796/.814/.715
GR-SigLIP-400m       .692/.722/.608 .696/.732/.548 .532/.581/.328 .769/.793/.671
"""


def _parse_table1(text: str) -> dict[str, dict[str, dict[str, float]]]:
    table: dict[str, dict[str, dict[str, float]]] = {}
    for line in text.strip().splitlines():
        row, *cells = line.split()
        table[row] = {
            subset: dict(zip(TABLE1_METRICS, map(float, cell.split("/")), strict=True))
            for subset, cell in zip(SUBSETS.values(), cells, strict=True)
        }
    return table


#: Appendix Table 1: ``TABLE1[row][paper subset][metric]`` (VLM2Vec rows spelled without spaces).
TABLE1: dict[str, dict[str, dict[str, float]]] = _parse_table1(_T1)

#: Our model config names -> the paper's model names (Table 1 rows without the "GR-" prefix):
#: the display names (:data:`mixsearch.jobinfo.MODEL_NAMES`) that name a paper row, plus
#: clip_l14, the seed code's 224-px checkpoint, matched to the row of the paper's 336-px one.
MODELS: dict[str, str] = {
    **{config: name for config, name in MODEL_NAMES.items() if name in TABLE1},
    "clip_l14": "CLIP-L/14",
}

#: Figure 2 (setting 1, NDCG@10 against the image ratio p), approximate readings:
#: ``{(paper model, benchmark): {calibration: [(p, ndcg@10), ...]}}``. CLIP's minimum is
#: included at the ratio where the figure shows it.
FIGURE2: dict[tuple[str, str], dict[str, list[tuple[float, float]]]] = {
    ("CLIP", "NFCorpus"): {"none": [(0.0, 0.215), (0.99, 0.02), (1.0, 0.365)],
                           "gr": [(0.0, 0.35), (0.99, 0.36), (1.0, 0.37)]},
    ("OpenCLIP", "NFCorpus"): {"none": [(0.0, 0.29), (1.0, 0.275)],
                               "gr": [(0.0, 0.345), (1.0, 0.27)]},
    ("SigLIP", "NFCorpus"): {"none": [(0.0, 0.14), (1.0, 0.30)],
                             "gr": [(0.0, 0.245), (1.0, 0.31)]},
    ("CLIP", "Google WIT"): {"none": [(0.0, 0.75), (0.95, 0.10), (1.0, 0.63)],
                             "gr": [(0.0, 0.79), (0.7, 0.49), (0.95, 0.52), (1.0, 0.62)]},
    ("CLIP", "MSCOCO"): {"none": [(0.0, 0.57), (0.85, 0.18), (1.0, 0.72)],
                         "gr": [(0.0, 0.82), (0.8, 0.55), (1.0, 0.72)]},
    ("CLIP", "SciFact"): {"none": [(0.0, 0.31), (1.0, 0.51)],
                          "gr": [(0.0, 0.40), (1.0, 0.52)]},
}

#: Figure 3 (setting 2, NDCG@10 against the text weight α), approximate readings:
#: ``{(paper model, benchmark): {calibration: [(alpha, ndcg@10), ...]}}`` (endpoints, best).
FIGURE3: dict[tuple[str, str], dict[str, list[tuple[float, float]]]] = {
    ("CLIP", "OVEN"): {"none": [(0.0, 0.70), (0.2, 0.71), (1.0, 0.39)],
                       "gr": [(0.55, 0.77), (1.0, 0.63)]},
    ("OpenCLIP", "OVEN"): {"none": [(0.0, 0.72), (0.4, 0.76), (1.0, 0.48)],
                           "gr": [(0.8, 0.82), (1.0, 0.78)]},
    ("SigLIP", "OVEN"): {"none": [(0.0, 0.69), (0.05, 0.69), (1.0, 0.26)],
                         "gr": [(0.35, 0.79), (1.0, 0.58)]},
    ("CLIP", "Google WIT"): {"none": [(0.0, 0.63), (0.8, 0.79), (1.0, 0.75)],
                             "gr": [(0.5, 0.87), (1.0, 0.785)]},
    ("CLIP", "MSCOCO"): {"none": [(0.0, 0.72), (0.15, 0.76), (1.0, 0.57)],
                         "gr": [(0.6, 0.88), (1.0, 0.85)]},
    ("CLIP", "VisualNews"): {"none": [(0.0, 0.75), (0.15, 0.82), (1.0, 0.81)],
                             "gr": [(0.65, 0.88), (1.0, 0.88)]},
}

#: The figures do not say which size of each family is plotted; match by family.
_FAMILY = {"CLIP-B/16": "CLIP", "CLIP-L/14": "CLIP", "OpenCLIP-B/16": "OpenCLIP",
           "OpenCLIP-L/14": "OpenCLIP", "SigLIP-400m": "SigLIP"}


def table1_row(model: str, calibration: str, fusion: str | None = None) -> str | None:
    """The Table 1 row of our ``model`` config with ``calibration`` method (and ``fusion``
    method, when given: VLM2Vec's rows are joint, the others α-weighted), or None."""
    if model not in MODELS or calibration not in CALIBRATION_PREFIX:
        return None
    row = CALIBRATION_PREFIX[calibration] + MODELS[model]
    if row not in TABLE1:
        return None
    if fusion is not None and fusion != ROW_FUSION.get(row, "weighted"):
        return None
    return row


def table1_value(
    model: str, calibration: str, subset: str, metric: str, fusion: str | None = None
) -> float | None:
    """The paper's Table 1 number for our names, or None when the paper has no such cell."""
    row = table1_row(model, calibration, fusion)
    if row is None or subset not in SUBSETS or metric not in TABLE1_METRICS:
        return None
    return TABLE1[row][SUBSETS[subset]][metric]


#: Benchmarks of the figures; BEIR ones appear in setting 1 only.
_BENCHMARKS = (*SUBSETS.values(), "NFCorpus", "SciFact")


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def paper_benchmark(name: str) -> str | None:
    """The paper's name of our dataset (``Google_WIT``, ``mixbench_oven``, ``beir/nfcorpus``)."""
    key = re.sub(r"^(mixbench|beir)", "", _norm(name))
    return next((b for b in _BENCHMARKS if _norm(b) == key), None)


def figure_readings(
    figure: dict[tuple[str, str], dict[str, list[tuple[float, float]]]], model: str, benchmark: str
) -> dict[str, list[tuple[float, float]]]:
    """Approximate paper points of FIGURE2/FIGURE3 for our model and benchmark ({} if none)."""
    family = _FAMILY.get(MODELS.get(model, ""))
    bench = paper_benchmark(benchmark)
    return figure.get((family, bench), {}) if family and bench else {}
