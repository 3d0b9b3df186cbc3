"""What a study will cost before it runs: exact FLOPs (`flops`), GPU-hours per stage (`gpu_hours`, the scheduler's
job cost and `plan --json`) and simulated jobs that sleep for it (`simulation`, the engine's tests and benchmark)."""
