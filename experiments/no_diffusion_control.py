"""The no-diffusion control (issue 24, item 3): does gFID's tokenizer ranking come from decoder x sampler rather
than from what diffusion learned?

For every finished tokenizer of a study: its validation latents, standardised as the diffusion model sees them
(the per-channel mean and std of its train latents), are perturbed (`raysweep.diffusion.control`: the Euler
sampler's exact per-direction shrinkage at the study's sampling steps and at 50 and 100, in the eigenbasis of the
train latents the diffusion model was fitted to; isotropic noise of sigma 0.1 and 0.2; and `none`, the plain
reconstruction), de-standardised, decoded by the tokenizer and scored with
the study's own scorer against the validation images (the stage-0 network, as rFID is scored). If this control
ranks tokenizers like the real gFID, the reversal comes from decoder x sampler rather than from learning.

    RAYSWEEP_STORAGE=/work/bench-studies PYTHONPATH=. python experiments/no_diffusion_control.py \
        experiments/benchmark.yaml --out experiments/results/no_diffusion_control

Writes OUT/control.csv (job, tokenizer_id, tokenizer_seed, tokenizer_key, perturbation, fd, gfid, viv, rfid: a row
per tokenizer job, so each seed replicate has its own; a row of the same tokenizer content key is not recomputed, so
a stopped run resumes, and a retrained tokenizer is measured again) and
OUT/control.md (Spearman and Pearson of the control FD with gFID over tokenizers, and r(VIV, control FD) beside
r(VIV, gFID)).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch
from scipy import stats

if TYPE_CHECKING:
    from raysweep.config.spec import StudySpec
    from raysweep.diffusion.control import Perturbation
    from raysweep.engine.store import Store
    from raysweep.features import FeatureSpec

GFID, VIV, RFID = "gen/gfid", "latent/velocity/viv", "recon/rfid"
ID, SEED, JOB, PERTURBATION, FD = "tokenizer_id", "tokenizer_seed", "job", "perturbation", "fd"
KEY = "tokenizer_key"  # the tokenizer's content key: a row is reused only for the tokenizer that made it
CSV_FILE, SUMMARY_FILE = "control.csv", "control.md"
NOISE_SEED = 0  # one noise draw for every tokenizer: differences between tokenizers are not the draw's


def perturbations(study_steps: int, steps: Sequence[int], sigmas: Sequence[float]) -> list[Perturbation]:
    """none, the shrinkage at the study's steps then at each of `steps`, the noise levels."""
    from raysweep.diffusion.control import Perturbation

    return [Perturbation("none"), *(Perturbation("shrink", steps=s) for s in dict.fromkeys([study_steps, *steps])),
            *(Perturbation("noise", sigma=s) for s in sigmas)]


def scoring_spec(study: StudySpec, store: Store, dataset_key: str) -> FeatureSpec:
    """The study's FID network as stage 0 left it (the domain net's weights from its finished reference result)."""
    from raysweep.config.plan import reference_key
    from raysweep.features import resolve_feature_network

    name = study.reference.feature_network
    if name != "domain":
        return resolve_feature_network(name, weights_path=study.reference.weights_path)
    weights = store.finished(store.reference(reference_key(study.reference, dataset_key)))["weights"]
    return resolve_feature_network(name, weights_path=weights)


def tokenizer_scores(table: pd.DataFrame) -> pd.DataFrame:
    """Per tokenizer replicate (tokenizer_id, tokenizer_seed): gFID (mean over its finished runs, each at its best
    CFG scale), VIV and rFID."""
    from raysweep.analysis import best_cfg_rows, split_excluded

    if GFID not in table.columns:  # no diffusion run has finished yet: the control FD is still measured
        table = table.assign(**{GFID: float("nan")})
    ok = split_excluded(table)[0]
    best = best_cfg_rows(ok) if len(ok) else ok
    gfid = pd.to_numeric(best[GFID], errors="coerce").groupby([best[ID], best[SEED]]).mean().rename("gfid")
    own = table.reindex(columns=[ID, SEED, VIV, RFID]).groupby([ID, SEED]).first()  # tokenizer-level columns
    own = own.apply(pd.to_numeric, errors="coerce").rename(columns={VIV: "viv", RFID: "rfid"})
    return own.join(gfid, how="left")[["gfid", "viv", "rfid"]]


def control_fd(store: Store, dataset_key: str, spec: FeatureSpec, key: str, todo: list[Perturbation],
               batch_size: int, device: torch.device) -> dict[str, float]:
    """FD of the decoded perturbed validation latents of tokenizer `key`, per perturbation name."""
    from raysweep.diffusion.control import Eigenbasis
    from raysweep.stages.diffusion import load_latents
    from raysweep.stages.generation import decode_standardised
    from raysweep.stages.scoring import reconstruction_scores, to_uint8
    from raysweep.tokenizers import load_tokenizer

    val, _ = load_latents(store, key, "val")
    train, meta = load_latents(store, key, "train")  # what the diffusion model was fitted to, and its statistics
    z = meta.standardise(val.latent)  # (N, C, H, W)
    flat = z.reshape(len(z), -1)  # (N, D)
    basis = Eigenbasis.of(meta.standardise(train.latent).reshape(len(train.latent), -1))
    decoder = load_tokenizer(store.tokenizer_file(key)).eval().to(device)
    out = {}
    for perturbation in todo:
        moved = torch.from_numpy(perturbation.apply(flat, NOISE_SEED, basis).reshape(z.shape))
        images = to_uint8(decode_standardised(decoder, moved, meta, batch_size))
        out[perturbation.name] = reconstruction_scores(store, dataset_key, spec, images, "val")[0]["rfid"]
    return out


def _r(method: Any, x: pd.Series, y: pd.Series) -> float:
    """A scipy.stats coefficient over the tokenizers that have both values; NaN under 3 or on a constant."""
    ok = x.notna() & y.notna()
    if ok.sum() < 3 or x[ok].nunique() < 2 or y[ok].nunique() < 2:
        return float("nan")
    return float(method(x[ok], y[ok]).statistic)


def summary(rows: pd.DataFrame, study_name: str, study_steps: int, command: str) -> str:
    """The markdown summary: per perturbation, how the control FD ranks tokenizers against gFID and VIV."""
    per_tok = rows.drop_duplicates(JOB).set_index(JOB)
    lines = [f"# No-diffusion control: study `{study_name}`", "", f"Command: `{command}`", "",
             "Each tokenizer's validation latents, perturbed in the diffusion model's standardised space (shrinkage "
             "along the train latents' covariance directions), decoded "
             "and scored against the validation images with the study's scorer (`fd`; `none` is the plain "
             f"reconstruction, so its FD is rFID). `shrink@euler{study_steps}` is the study's own sampler. Over "
             "tokenizers with a gFID (each seed replicate one point); r = Pearson, ρ = Spearman, of raw VIV (lower: "
             "a simpler velocity field), so the report's sign-normalised r is the negative of these.", "",
             f"r(VIV, gFID) = {_r(stats.pearsonr, per_tok['viv'], per_tok['gfid']):.3f}, "
             f"ρ(VIV, gFID) = {_r(stats.spearmanr, per_tok['viv'], per_tok['gfid']):.3f} "
             f"over {int(per_tok[['viv', 'gfid']].notna().all(axis=1).sum())} tokenizers.", "",
             "| perturbation | tokenizers | ρ(FD, gFID) | r(FD, gFID) | r(VIV, FD) | ρ(VIV, FD) | mean FD |",
             "|---|---|---|---|---|---|---|"]
    for name, group in rows.groupby(PERTURBATION, sort=False):
        fd, gfid, viv = group[FD], group["gfid"], group["viv"]
        lines.append(f"| {name} | {int((fd.notna() & gfid.notna()).sum())} | {_r(stats.spearmanr, fd, gfid):.3f} | "
                     f"{_r(stats.pearsonr, fd, gfid):.3f} | {_r(stats.pearsonr, viv, fd):.3f} | "
                     f"{_r(stats.spearmanr, viv, fd):.3f} | {fd.mean():.4g} |")
    lines += ["", "Reading: a shrinkage row whose ρ(FD, gFID) is high and whose r(VIV, FD) has the sign of "
              "r(VIV, gFID), beyond what `none` (reconstruction alone) shows, says the ranking is decoder x sampler; "
              "rows that do not track gFID say it is not.", ""]
    return "\n".join(lines)


def _table(done: dict[tuple[str, str], float], identity: dict[str, tuple[str, str, int]], scores: pd.DataFrame,
           order: list[str]) -> pd.DataFrame:
    rows = pd.DataFrame([{JOB: identity[k][0], ID: identity[k][1], SEED: identity[k][2], KEY: k, PERTURBATION: p,
                          FD: fd} for (k, p), fd in done.items()], columns=[JOB, ID, SEED, KEY, PERTURBATION, FD])
    rows = rows.join(scores, on=[ID, SEED])
    rows[PERTURBATION] = pd.Categorical(rows[PERTURBATION], categories=order + sorted(set(rows[PERTURBATION]) -
                                                                                      set(order)))
    return rows.sort_values([PERTURBATION, JOB]).assign(**{PERTURBATION: lambda f: f[PERTURBATION].astype(str)})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", help="the study's YAML file (its store must hold finished tokenizers)")
    parser.add_argument("--storage", metavar="DIR", help="studies directory (sets RAYSWEEP_STORAGE, as for raysweep)")
    parser.add_argument("--out", default="experiments/results/no_diffusion_control", metavar="DIR")
    parser.add_argument("--steps", type=_numbers(int), default=[50, 100], metavar="A,B",
                        help="Euler steps to shrink at besides the study's (default 50,100)")
    parser.add_argument("--sigmas", type=_numbers(float), default=[0.1, 0.2], metavar="A,B",
                        help="isotropic noise levels in the standardised space (default 0.1,0.2)")
    args = parser.parse_args(argv)
    if args.storage:
        os.environ["RAYSWEEP_STORAGE"] = args.storage
    from raysweep.cli import user_error

    try:
        return _run(args, argv)
    except Exception as err:  # bad input (a study file, a store not run): one line, as the raysweep CLI says it
        line = user_error(err)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        return 2


def _numbers(kind: type[int] | type[float]) -> Any:
    """An argparse type: a comma-separated list of `kind`."""
    def parse(text: str) -> list[int | float]:
        try:
            return [kind(part) for part in text.split(",") if part]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__}s, got {text!r}") from None

    return parse


def _run(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    """Every finished tokenizer's missing rows, the CSV rewritten after each tokenizer, then the summary."""
    from raysweep.api import load, plan, table
    from raysweep.atomic import write_text_atomic
    from raysweep.cli import require_tracking_store
    from raysweep.config import ConfigError
    from raysweep.config.plan import dataset_key
    from raysweep.engine.store import Store

    study = load(args.study)
    require_tracking_store(study, args.study)  # opening a missing store would create an empty one
    store = Store(study.root, study.latent_storage)
    data_key = dataset_key(study.dataset)
    steps = study.evaluation.sampling_steps
    try:
        wanted = perturbations(steps, args.steps, args.sigmas)
    except ValueError as err:
        raise ConfigError("no_diffusion_control.py", "--steps/--sigmas", str(err)) from None
    order = [p.name for p in wanted]
    scores = tokenizer_scores(table(study))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    csv = out / CSV_FILE
    done: dict[tuple[str, str], float] = {}
    if csv.is_file() and KEY in (previous := pd.read_csv(csv)).columns:
        done = {(str(k), str(p)): float(f) for k, p, f in zip(previous[KEY], previous[PERTURBATION], previous[FD])}
    spec = scoring_spec(study, store, data_key)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tokenizers = plan(study).tokenizers
    identity = {job.key: (job.id, job.trial.tags()[ID], job.trial.seed) for job in tokenizers}
    done = {k: v for k, v in done.items() if k[0] in identity}  # rows of tokenizers no longer in the study: dropped
    t0 = time.perf_counter()
    for i, job in enumerate(tokenizers, 1):
        todo = [p for p in wanted if (job.key, p.name) not in done]
        head = f"[{i}/{len(tokenizers)}] {job.id}"
        if not todo:
            print(f"{head}: done before", flush=True)
            continue
        if store.done(job) is None:
            print(f"{head}: tokenizer not finished in {store.root}; skipped", flush=True)
            continue
        fds = control_fd(store, data_key, spec, job.key, todo, study.evaluation.batch_size, device)
        done.update({(job.key, name): fd for name, fd in fds.items()})
        write_text_atomic(csv, _table(done, identity, scores, order).to_csv(index=False))
        print(f"{head}: " + ", ".join(f"{n} {v:.4g}" for n, v in fds.items())
              + f" ({time.perf_counter() - t0:.0f}s)", flush=True)
    rows = _table(done, identity, scores, order)
    write_text_atomic(csv, rows.to_csv(index=False))
    command = " ".join(["python experiments/no_diffusion_control.py", *(argv if argv is not None else sys.argv[1:])])
    write_text_atomic(out / SUMMARY_FILE, summary(rows, study.name, steps, command))
    print(f"{len(rows)} rows in {csv}; summary {out / SUMMARY_FILE} ({time.perf_counter() - t0:.0f}s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
