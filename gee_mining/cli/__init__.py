"""The `gee-mining` command line: one module per command family, `main` builds the parser."""
