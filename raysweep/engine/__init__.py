"""The study engine: runs a `StudyPlan` — the runner, the DAG scheduler, executors (Tune | in-process), Tune glue,
checkpointing, the store and its markers, the run lock, progress events, `status` and store migration.

It knows job types only through the stage table; the maths lives in the cores and the stages."""
