"""Live migration: the engine that drives a migration and the statistics it reports."""
