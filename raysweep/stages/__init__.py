"""One module per job type — reference, tokenizer, latent_metrics, model_metrics, diffusion, search, analysis,
allocation_gate — each saying how to run its job; scoring, metric_logging and figures are what several share.

A stage imports the cores and the engine's store/context, never another stage."""
