"""`make demo`: every step end to end on the local engine, one module per step. Not imported by the library."""
