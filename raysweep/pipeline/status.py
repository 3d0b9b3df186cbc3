"""`raysweep status`: what is finished in the store, without starting Ray."""
from __future__ import annotations

from typing import Any

from raysweep.config.spec import StudySpec
from raysweep.pipeline.images import dataset_key
from raysweep.pipeline.store import Store


def study_status(study: StudySpec, text: bool = False) -> Any:
    store = Store(study.root)
    toks = []
    for t in study.tokenizer_trials:
        key = t.key()
        toks.append({"id": t.id, "key": key,
                     "trained": store.result(store.tokenizer(key)) is not None,
                     "metrics": store.result(store.tokenizer(key) / "metrics") is not None})
    diffusion_done = sum(1 for _ in store.root.glob("diffusion/*/result.json"))
    status = {"study": study.name, "root": str(study.root),
              "data_ready": store.data(dataset_key(study.dataset)).is_dir(), "tokenizers": toks,
              "diffusion_trials": len(toks) * len(study.diffusion_trials) * len(study.diffusion_seeds),
              "diffusion_finished": diffusion_done}
    if not text:
        return status
    lines = [f"study {study.name} ({study.root})"]
    lines += [f"  {t['id']:<28} trained={'yes' if t['trained'] else 'no ':<3} metrics={'yes' if t['metrics'] else 'no'}"
              for t in toks]
    lines.append(f"  diffusion: {diffusion_done}/{status['diffusion_trials']} finished")
    return "\n".join(lines)
