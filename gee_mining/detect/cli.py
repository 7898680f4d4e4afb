def add_cli(subparsers):
    pass
