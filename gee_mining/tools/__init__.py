"""Tools around the pipeline: Code Editor JavaScript (`jsgen`), the run report, the engine's algorithm list."""
