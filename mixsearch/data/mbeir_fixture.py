"""A small M-BEIR copy in the hub's exact on-disk layout, drawn from the toy shapes world.

``write_mbeir_fixture(root)`` writes four test tasks whose candidates together hold every
modality, so the global pool is mixed as the real one is:

==================  ==================  ==========================================
task file stem      query -> candidate  content (toy world, same scene = relevant)
==================  ==================  ==========================================
mscoco_task0        text -> image       caption -> rendering
mscoco_task3        image -> text       rendering -> caption
webqa_task2         text -> image,text  caption -> rendering + description
oven_task6          image,text -> text  rendering + question -> name + description
==================  ==================  ==========================================

plus distractor candidates of each modality in the global pool, local pools named as the
real ones (MSCOCO's with the split in the name, the others without), five-column qrels,
``instructions/query_instructions.tsv`` and JPEG images under ``mbeir_images/``. The toy CLIP
(``model=toy``) ranks it far above chance. Command line::

    python -m mixsearch.data.mbeir_fixture DIR
    python run.py dataset=mbeir dataset.root=DIR calibration=gr
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from mixsearch.toymodel.world import caption, description, render, sample_scene

#: (task stem, dataset id, dataset name, query modality, candidate modality, task id)
TASKS = (
    ("mscoco_task0", "9", "MSCOCO", "text", "image", 0),
    ("mscoco_task3", "9", "MSCOCO", "image", "text", 3),
    ("webqa_task2", "2", "WebQA", "text", "image,text", 2),
    ("oven_task6", "5", "OVEN", "image,text", "text", 6),
)
_QUESTIONS = ("What is shown in this picture?", "Which scene is this?")


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


class _Writer:
    """Draws distinct scenes and writes their images under ``root/mbeir_images``."""

    def __init__(self, root: Path, seed: int) -> None:
        self.root, self.rng = root, random.Random(f"mbeir-fixture:{seed}")
        self.seen: set = set()

    def scene(self):
        while True:
            s = sample_scene(self.rng)
            if s.key not in self.seen:
                self.seen.add(s.key)
                return s

    def image(self, scene, name: str, folder: str) -> str:
        rel = f"mbeir_images/{folder}/{name}.jpg"
        (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
        render(scene, self.rng).save(self.root / rel, quality=90)
        return rel

    def item(self, scene, modality: str, name: str, folder: str, *, query: bool) -> dict:
        """The txt / img_path of a query (``question`` for OVEN-style image,text) or a candidate."""
        text = image = None
        if "text" in modality:
            if query:
                text = self.rng.choice(_QUESTIONS) if "image" in modality else caption(scene, self.rng)
            else:
                text = caption(scene, self.rng) if modality == "text" else description(scene, self.rng)
        if "image" in modality:
            image = self.image(scene, name, folder)
        return {"txt": text, "img_path": image}


def write_mbeir_fixture(root: str | Path, *, n_queries: int = 6, n_distractors: int = 4,
                        split: str = "test", seed: int = 0) -> Path:
    """Write the fixture under ``root`` (created); returns ``root`` as a Path.

    Args:
        root: the folder (the layout of ``TIGER-Lab/M-BEIR`` after extracting the images).
        n_queries: queries per task (each with one positive candidate).
        n_distractors: extra global-pool candidates per task, of the task's candidate modality.
        split: the split the files are named for.
        seed: fixes every scene, pixel and word.
    """
    root = Path(root)
    w = _Writer(root, seed)
    union: list[dict] = []
    instructions = ["query_modality\tcand_modality\tdataset_name\tdataset_id\t"
                    "prompt_1\tprompt_2\tprompt_3\tprompt_4"]
    next_did: dict[str, int] = {}
    next_qid: dict[str, int] = {}
    for stem, ds, ds_name, q_mod, c_mod, task_id in TASKS:
        folder = f"{ds_name.lower()}_images"
        queries, local, qrels = [], [], []
        for i in range(n_queries + n_distractors):
            scene = w.scene()
            next_did[ds] = next_did.get(ds, 0) + 1
            did = f"{ds}:{next_did[ds]}"
            cand = {"txt": None, "img_path": None, "modality": c_mod, "did": did,
                    "src_content": None,
                    **w.item(scene, c_mod, f"cand_{did.replace(':', '_')}", folder, query=False)}
            local.append(cand)
            if i >= n_queries:
                continue  # a distractor: in the pools, judged for no query
            next_qid[ds] = next_qid.get(ds, 0) + 1
            qid = f"{ds}:{next_qid[ds]}"
            q = w.item(scene, q_mod, f"query_{qid.replace(':', '_')}", folder, query=True)
            queries.append({"qid": qid, "query_txt": q["txt"], "query_img_path": q["img_path"],
                            "query_modality": q_mod, "query_src_content": json.dumps({"id": i}),
                            "pos_cand_list": [did], "neg_cand_list": [], "task_id": task_id})
            qrels.append(f"{qid} 0 {did} 1 {task_id}\n")
        _jsonl(root / "query" / split / f"mbeir_{stem}_{split}.jsonl", queries)
        # the real MSCOCO local pools carry the split in their name, the others do not
        local_name = f"mbeir_{stem}_{split}_cand_pool.jsonl" if ds_name == "MSCOCO" else \
            f"mbeir_{stem}_cand_pool.jsonl"
        _jsonl(root / "cand_pool" / "local" / local_name, local)
        union += local
        (root / "qrels" / split).mkdir(parents=True, exist_ok=True)
        (root / "qrels" / split / f"mbeir_{stem}_{split}_qrels.txt").write_text("".join(qrels))
        what = {"text": "a caption", "image": "an image", "image,text": "an image with a description"}
        instructions.append(f"{q_mod}\t{c_mod}\t{ds_name}\t{ds}\t"
                            f"Retrieve {what[c_mod]} that matches this query.\t"
                            f"Find {what[c_mod]} for the given query.\t\t")
    _jsonl(root / "cand_pool" / "global" / f"mbeir_union_{split}_cand_pool.jsonl", union)
    (root / "instructions").mkdir(parents=True, exist_ok=True)
    (root / "instructions" / "query_instructions.tsv").write_text("\n".join(instructions) + "\n")
    return root


def main(argv: list[str] | None = None) -> None:
    """``python -m mixsearch.data.mbeir_fixture DIR``: write the fixture into DIR."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m mixsearch.data.mbeir_fixture DIR")
    print(write_mbeir_fixture(args[0]))


if __name__ == "__main__":
    main()
