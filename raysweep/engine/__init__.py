"""The study engine: what runs a `StudyPlan` — the DAG scheduler, executors (Tune | in-process), Tune glue,
checkpointing, the store and its markers, the run lock, progress events, the metric pool, `status` and store
migration.

It names no stage: `raysweep.runner` wires the stages (`raysweep.stages`) into it, one table entry per job type."""
