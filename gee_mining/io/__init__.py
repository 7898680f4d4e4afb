"""Reading and writing what the pipeline hands on: grid and pixel tables, polygon files, the catalog, storage, feature pages from an engine."""
