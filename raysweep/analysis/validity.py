"""Is gFID measuring the tokenizers? The report's validity sections, from the tidy table alone.

* gFID floor: per scorer, the real floor (FD of held-out vs training images on the same features), each
  tokenizer's rFID and gFID beside it and gFID − floor; a gFID far above both floor and rFID, not following rFID,
  is dominated by diffusion-side error. The floor is the logged `gen/fd_floor`, or gFID / FDr when FDr was taken
  on the FID network alone (FDr = FD(gen, train) / FD(val, train)).
* Sample-size bias: FD∞ (`gen/fdinf`, Chong & Forsyth 2020) and KID (`gen/kid`) beside gFID, with the agreement of
  the tokenizer rankings (does the ranking survive removing the 1/N bias?).
* Second scorer: `gen/gfid@<scorer>` columns, their rank agreement with gFID and each other; tokenizers trained with
  an alignment regularizer are flagged beside the scorer whose features they align to; skipped scorers, with why.
* Convergence (`analysis.convergence`) and sampler steps (`gen/sampler/gfid@<sampler><steps>` columns).
A section whose data the study lacks says so in one line.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from raysweep.analysis.convergence import TREND_INTERVALS, convergence_flags, provisional
from raysweep.analysis.rank_agreement import rank_agreement as agreement
from raysweep.analysis.report import ReportSection
from raysweep.analysis.tidy import DEFAULT_TARGET

FLOOR, FD_INF, KID, FDR, RFID, PSNR = "gen/fd_floor", "gen/fdinf", "gen/kid", "gen/fdr", "recon/rfid", "recon/psnr"
SCORER_COLUMN = re.compile(r"^gen/gfid@([A-Za-z][\w.-]*)$")
SAMPLER_COLUMN = re.compile(r"^gen/sampler/gfid@([a-z]+)(\d+)$")
ALIGNMENT_REGULARIZERS = ("vf", "mcos", "mdms", "repa")  # align latents to an encoder's features (default: domain)
DOMAIN_SCORER = "domain"
EXTRA_SCORERS = "card.extra_scorers"  # the card's list of extra scorers, those skipped with their reason
TOKENIZER = "tokenizer_id"
TOP_K = 3
SECTION_TITLES = ("gFID floor", "Sample-size bias (FD∞, KID)", "Second scorer", "Convergence", "Sampler steps")


def _per_tokenizer(best: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Mean of each column over a tokenizer's rows (its seeds and backbones at their best CFG)."""
    present = [c for c in columns if c in best.columns]
    values = best[present].apply(pd.to_numeric, errors="coerce")
    return values.groupby(best[TOKENIZER]).mean()


def rank_agreement(best: pd.DataFrame, reference: str, other: str, top_k: int = TOP_K) -> dict[str, object]:
    """A report row: how two lower-is-better scores (means over a tokenizer's seeds) rank the tokenizers
    (`analysis.rank_agreement`): Spearman rho, Kendall tau, the overlap of their top-k, the tokenizers with both."""
    means = _per_tokenizer(best, [reference, other])
    a = agreement(means[reference].to_dict(), means[other].to_dict(), top_k)
    overlap = np.nan if np.isnan(a.spearman) else f"{a.top_k_shared}/{a.top_k}"
    return {"reference": reference, "score": other, "tokenizers": a.n, "spearman": a.spearman, "kendall": a.kendall,
            f"top{top_k}_overlap": overlap}


def _floor(best: pd.DataFrame) -> tuple[pd.Series | None, str]:
    """Per-row real floor of the FID network, and where it came from."""
    if FLOOR in best.columns:
        return pd.to_numeric(best[FLOOR], errors="coerce"), f"{FLOOR} (FD(val, train) on the FID network)"
    networks = best["card.fd_networks"].dropna().astype(str) if "card.fd_networks" in best.columns else pd.Series()
    if FDR in best.columns and len(networks) and not networks.str.contains(",").any():
        floor = pd.to_numeric(best[DEFAULT_TARGET], errors="coerce") / pd.to_numeric(best[FDR], errors="coerce")
        return floor, f"gFID / FDr (FDr taken on the FID network alone: {networks.iloc[0]})"
    return None, ""


def _scorer_floor(best: pd.DataFrame, scorer: str, gfid: str, floor: pd.Series) -> pd.DataFrame:
    """One scorer's rows: per tokenizer its floor, gFID (in column gen/gfid), gFID − floor; rFID and PSNR (scored on
    the FID network) only beside the FID network's own rows."""
    columns = [FLOOR, gfid, *((RFID, PSNR) if gfid == DEFAULT_TARGET else ())]
    means = _per_tokenizer(best.assign(**{FLOOR: floor}), columns).rename(columns={gfid: DEFAULT_TARGET})
    frame = means.assign(scorer=scorer, gfid_minus_floor=means[DEFAULT_TARGET] - means[FLOOR])
    if RFID in means.columns:
        frame["gfid_over_rfid"] = means[DEFAULT_TARGET] / means[RFID]
    return frame.reset_index().sort_values(DEFAULT_TARGET)


def floor_section(best: pd.DataFrame) -> ReportSection:
    """Per scorer and tokenizer: floor, rFID, gFID, gFID − floor, gFID / rFID; the note says whether gFID tracks
    rFID. Extra scorers appear where the table has their `gen/gfid@<scorer>` and `gen/fd_floor@<scorer>`."""
    title = SECTION_TITLES[0]
    floor, source = _floor(best)
    if floor is None:
        return ReportSection(title, pd.DataFrame(), f"Not available: the table has no {FLOOR} and no single-network "
                             f"{FDR} to derive it from (re-score the runs to log it).")
    scorer = str(best["card.feature_network"].dropna().iloc[0]) if "card.feature_network" in best.columns and \
        best["card.feature_network"].notna().any() else "FID network"
    frame = _scorer_floor(best, scorer, DEFAULT_TARGET, floor)
    extra = [_scorer_floor(best, m.group(1), c, pd.to_numeric(best[f"{FLOOR}@{m.group(1)}"], errors="coerce"))
             for c in best.columns if isinstance(c, str) and (m := SCORER_COLUMN.match(c))
             and f"{FLOOR}@{m.group(1)}" in best.columns]
    shown = [c for c in (TOKENIZER, "scorer", FLOOR, RFID, DEFAULT_TARGET, "gfid_minus_floor", "gfid_over_rfid",
                         PSNR) if c in frame.columns]
    facts = [f"Floor of {scorer} from {source}: {frame[FLOOR].median():.4g} (median over tokenizers); gFID "
             f"{frame[DEFAULT_TARGET].min():.4g}–{frame[DEFAULT_TARGET].max():.4g}, median "
             f"{(frame[DEFAULT_TARGET] / frame[FLOOR]).median():.3g}× the floor."]
    for column, label in ((RFID, "rFID"), (PSNR, "PSNR")):
        pair = frame[[column, DEFAULT_TARGET]].dropna() if column in frame.columns else pd.DataFrame()
        if len(pair) >= 3 and pair[column].nunique() > 1:
            facts.append(f"Pearson r(gFID, {label}) over tokenizers = {stats.pearsonr(*pair.T.values).statistic:+.2f}.")
    if RFID in frame.columns and (frame[DEFAULT_TARGET] > 2 * frame[RFID]).mean() > 0.5:
        facts.append("gFID exceeds twice the rFID for most tokenizers: generation error is mostly diffusion-side "
                     "(training length, sampler), which the latent metrics are not meant to predict.")
    return ReportSection(title, pd.concat([frame, *extra], ignore_index=True)[shown], " ".join(facts))


def sample_size_section(best: pd.DataFrame) -> ReportSection:
    """gFID beside FD∞ and KID per tokenizer, and whether the tokenizer ranking changes without the 1/N bias."""
    present = [c for c in (FD_INF, KID) if c in best.columns and pd.to_numeric(best[c], errors="coerce").notna().any()]
    title = SECTION_TITLES[1]
    if not present:
        return ReportSection(title, pd.DataFrame(), f"Not measured in this study: no {FD_INF} / {KID} columns "
                             "(runs scored before FD∞ and KID were logged; re-score to get them).")
    agreement = pd.DataFrame([rank_agreement(best, DEFAULT_TARGET, c) for c in present])
    return ReportSection(title, agreement, "Rank agreement over tokenizers of gFID (FD at the run's N) with FD∞ "
                         "(FD extrapolated to N = ∞ from a linear fit in 1/N) and KID (unbiased): a ranking that "
                         "survives is not an artefact of the sample size.")


def _aligned_to(best: pd.DataFrame) -> dict[str, list[str]]:
    """Scorer network -> the tokenizers trained to align their latents to its features: an alignment regularizer's
    `encoder` param, read from the `variant` tag (`encoder=<name>`), else its default, the domain network."""
    if "cluster" not in best.columns:
        return {}
    out: dict[str, list[str]] = {}
    aligned = best.loc[best["cluster"].isin(ALIGNMENT_REGULARIZERS)].drop_duplicates(TOKENIZER)
    for tokenizer, variant in zip(aligned[TOKENIZER], aligned.get("variant", pd.Series("", index=aligned.index))):
        match = re.search(r"(?:^|,)encoder=([^,]+)", str(variant))
        out.setdefault(match.group(1) if match else DOMAIN_SCORER, []).append(str(tokenizer))
    return {name: sorted(tokenizers) for name, tokenizers in out.items()}


def _skipped_scorers(best: pd.DataFrame) -> list[str]:
    """"<scorer> skipped: <reason>" entries of the runs' cards (`card.extra_scorers`), once each."""
    if EXTRA_SCORERS not in best.columns:
        return []
    entries = {e.strip() for text in best[EXTRA_SCORERS].dropna().astype(str) for e in text.split(";")}
    return sorted(e for e in entries if " skipped: " in e)


def second_scorer_section(best: pd.DataFrame) -> ReportSection:
    """Per scorer (the FID network first, then every `gen/gfid@<scorer>`): its median gFID and floor over tokenizers,
    the rank agreement of its tokenizer ranking with each scorer before it (Spearman, Kendall, top-k overlap), and the
    tokenizers whose regularizer aligns their latents to its features, flagged beside its numbers; then the scorers
    the study skipped and why."""
    title = SECTION_TITLES[2]
    primary = str(best["card.feature_network"].dropna().iloc[0]) if "card.feature_network" in best.columns and \
        best["card.feature_network"].notna().any() else DOMAIN_SCORER
    targets = {primary: (DEFAULT_TARGET, FLOOR)}
    targets.update({m.group(1): (c, f"{FLOOR}@{m.group(1)}") for c in best.columns
                    if isinstance(c, str) and (m := SCORER_COLUMN.match(c))})
    aligned, skipped = _aligned_to(best), _skipped_scorers(best)
    flags = [f"{', '.join(tokenizers)} align their latents to {name}'s features, so {name}'s gFID scores them "
             "circularly" for name, tokenizers in aligned.items()]
    notes = [*(f"{f}." for f in flags), *(f"Scorer {s}." for s in skipped)]
    if len(targets) < 2:
        return ReportSection(title, pd.DataFrame(), " ".join(["Not measured in this study: one scorer only (no "
                             "gen/gfid@<scorer> columns), so gFID cannot be told apart from that network's taste.",
                                                              *notes]))
    rows = []
    names = list(targets)
    for i, name in enumerate(names):
        gfid, floor = targets[name]
        means = _per_tokenizer(best, [gfid, floor])
        numbers = {"scorer": name, "gfid_median": means[gfid].median() if gfid in means else np.nan,
                   "floor_median": means[floor].median() if floor in means else np.nan,
                   "aligned_tokenizers": ", ".join(aligned.get(name, [])) or "none"}
        for other in names[:i] or [""]:  # the FID network's own row compares with none
            agreement = rank_agreement(best, targets[other][0], gfid) if other else {}
            rows.append({**numbers, "versus": other,
                         **{k: v for k, v in agreement.items() if k not in ("reference", "score")}})
    frame = pd.DataFrame(rows)
    return ReportSection(title, frame, " ".join([
        f"Each scorer's gFID is its own target (gen/gfid@<scorer>); rank agreement over tokenizers with each scorer "
        f"listed before it (the FID network {primary} first).", *notes]))


def convergence_section(best: pd.DataFrame) -> tuple[ReportSection, str]:
    """The convergence flags and the provisional-answer warning ("" when every group converged)."""
    flags = convergence_flags(best)
    title = SECTION_TITLES[3]
    if flags.empty:
        return ReportSection(title, flags, "Not measured in this study: no cheap gFID per checkpoint "
                             "(conv/gfid@<step> columns), so whether the diffusion models converged is unknown."), ""
    note = ("Per tokenizer x backbone: under-trained if the cheap gFID improved by > 5 % over the last checkpoint "
            "interval and by > 2 seed standard errors; unknown with < 3 checkpoints or one seed. trend (not part of "
            "the rule): the relative improvement per interval of a least-squares line through the last "
            f"{TREND_INTERVALS} intervals, with its seed SE; a curve that paused for one interval passes the rule, "
            "not its trend.")
    return ReportSection(title, flags, note), provisional(flags)


def sampler_section(best: pd.DataFrame) -> ReportSection:
    """Rank agreement of gFID with re-sampled gFIDs (more steps, Heun) where the study has them."""
    columns = [c for c in best.columns if isinstance(c, str) and SAMPLER_COLUMN.match(c)]
    title = SECTION_TITLES[4]
    if not columns:
        return ReportSection(title, pd.DataFrame(), "Not measured in this study: no re-sampling of saved models at "
                             "more steps or with Heun (gen/sampler/gfid@<sampler><steps> columns).")
    frame = pd.DataFrame([rank_agreement(best, DEFAULT_TARGET, c) for c in columns])
    return ReportSection(title, frame, "Does the tokenizer ranking move when the same models sample with more "
                         "steps / Heun? Low agreement means the sampler, not the latent, decides the ranking.")


def validity_sections(best: pd.DataFrame) -> tuple[list[ReportSection], list[str]]:
    """The five validity sections (titles `SECTION_TITLES`, in order) and the report's warnings."""
    convergence, warning = convergence_section(best)
    sections = [floor_section(best), sample_size_section(best), second_scorer_section(best), convergence,
                sampler_section(best)]
    return sections, [warning] if warning else []
