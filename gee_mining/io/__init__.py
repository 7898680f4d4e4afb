"""Reading and writing what the pipeline hands on: grid and pixel tables, polygon files, the catalog, storage, feature pages and NPY pixels from an engine."""
