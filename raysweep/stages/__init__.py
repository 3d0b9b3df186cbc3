"""One module per job type — reference, tokenizer, latent_metrics, model_metrics, diffusion, search, analysis —
each exporting `task(job, run) -> Task`, how a job of its type runs (`raysweep.runner.STAGES` is the table of
them); allocation_gate is the scheduler's gate of a proxy allocation; scoring, metric_logging and figures are what
several stages share. A stage imports the cores and the engine, never another stage: a tokenizer search hands
each trial's tokenizer and metric jobs to the scheduler as a sub-plan."""
