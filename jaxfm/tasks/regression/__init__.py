"""Mean-squared-error regression (the quickstart and the engine's test task)."""
