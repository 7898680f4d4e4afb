"""Batch work on Earth Engine: export tasks, products, resumable jobs with their ledger."""
